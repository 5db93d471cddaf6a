"""One contract for each storage port, run against every adapter: SQLite, and PostgreSQL / MongoDB."""

from __future__ import annotations

import asyncio

import pytest
from agora.events.v1 import polls_pb2 as events
from agora.polls.v1.polls_pb2 import VotesCast

from services.kit.bus.envelopes import unpack
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.kit.stores.sqlite import SqliteDatabase
from services.polls.domain import (
    CloseReason,
    CountedVote,
    Policy,
    PollDraft,
    Tally,
    TallyChange,
    VoteRequest,
    now_us,
    tally_change,
)
from services.polls.events import closed_events, created_events, vote_event, votes_event
from services.polls.store import FinalResults
from services.polls.stores.sqlite import SqlitePollStore, SqliteTallyStore
from tests.services.polls.conftest import unique


@pytest.fixture(params=["sqlite", "postgres"])
async def polls(request, tmp_path):
    if request.param == "sqlite":
        store = SqlitePollStore(SqliteDatabase(tmp_path / "polls.sqlite3"))
        yield store
        await store.close()
        return
    from services.polls.stores.postgres import PostgresPollStore

    store = PostgresPollStore(request.getfixturevalue("postgres_url"), schema=unique("contract"))
    yield store
    await store.drop()
    await store.close()


@pytest.fixture(params=["sqlite", "mongo"])
async def tallies(request, tmp_path):
    if request.param == "sqlite":
        store = SqliteTallyStore(SqliteDatabase(tmp_path / "tallies.sqlite3"))
        yield store
        await store.close()
        return
    from services.polls.stores.mongo import MongoTallyStore

    store = MongoTallyStore(request.getfixturevalue("mongo_url"), unique("contract"))
    yield store
    await store.drop()
    await store.close()


def draft(policy=Policy.ONE_PER_VOTER_KEY, allow_change=False, closes_at=None, options=("a", "b", "c")):
    return PollDraft("Which?", tuple(options), policy, allow_change, closes_at)


async def outbox_events(store) -> list:
    conn = await asyncio.to_thread(store.relay_connection)
    try:
        rows = await asyncio.to_thread(store.outbox.claim, conn, 10_000)
        await asyncio.to_thread(store.outbox.release, conn)
    finally:
        await asyncio.to_thread(conn.close)
    from agora.events.v1.envelope_pb2 import Envelope

    return [Envelope.FromString(bytes(body)) for _, body in rows]


async def test_create_get_and_list(polls):
    now = now_us()
    made = [await polls.create_poll(f"p{i}", draft(), "ann" if i % 2 else "", now + i, created_events)
            for i in range(5)]
    assert await polls.get_poll("p3") == made[3]
    assert await polls.get_poll("nope") is None
    page = await polls.list_polls(limit=2, after=None, open_only=None, creator_id="", now=now)
    assert [p.id for p in page.polls] == ["p4", "p3"] and page.next_cursor is not None
    page = await polls.list_polls(limit=10, after=page.next_cursor, open_only=None, creator_id="", now=now)
    assert [p.id for p in page.polls] == ["p2", "p1", "p0"] and page.next_cursor is None
    mine = await polls.list_polls(limit=10, after=None, open_only=True, creator_id="ann", now=now)
    assert [p.id for p in mine.polls] == ["p3", "p1"]
    assert [e.type for e in await outbox_events(polls)] == ["polls.poll.created"] * 5


async def test_votes_numbered_without_gaps_duplicates_refused_retries_answered(polls):
    await polls.create_poll("p", draft(), "ann", now_us(), created_events)
    batch = [VoteRequest("p", i % 3, f"v{i}", "", f"r{i}") for i in range(10)]
    batch += [VoteRequest("p", 0, "v0", ""), VoteRequest("p", 5, "x", ""), VoteRequest("p", 0, "", ""),
              VoteRequest("missing", 0, "v", ""), VoteRequest("p", 1, "v1", "", "r1")]
    out = await polls.cast_votes(batch, now_us(), vote_event)
    accepted = out[:10]
    assert sorted(b.number for b in accepted) == list(range(1, 11))
    assert isinstance(out[10], AlreadyExists)
    assert isinstance(out[11], InvalidArgument) and "option" in out[11].violations
    assert isinstance(out[12], InvalidArgument) and "voter_key" in out[12].violations
    assert isinstance(out[13], NotFound)
    assert out[14] == accepted[1]  # same request id: the first answer
    again = await polls.cast_votes([VoteRequest("p", 2, "v2", "", "r2"), VoteRequest("p", 2, "new", "")],
                                   now_us(), vote_event)
    assert again[0] == accepted[2] and again[1].number == 11
    assert (await polls.get_poll("p")).vote_count == 11
    cast = [unpack(e, events.VoteCast) for e in await outbox_events(polls) if e.type == "polls.vote.cast"]
    assert sorted(v.poll_vote_number for v in cast) == list(range(1, 12))


async def test_a_vote_batch_is_one_transaction_with_one_event_of_all_its_accepted_votes(polls):
    await polls.create_poll("p", draft(), "ann", now_us(), created_events)
    await polls.create_poll("q", draft(policy=Policy.UNRESTRICTED), "ann", now_us(), created_events)
    batch = [VoteRequest("p", 0, "v0", "", "r0"), VoteRequest("q", 1, "", "", "s0"),
             VoteRequest("p", 9, "x", ""), VoteRequest("p", 0, "v0", ""), VoteRequest("missing", 0, "v", ""),
             VoteRequest("p", 1, "v1", "", "r1"), VoteRequest("p", 0, "v0", "", "r0")]
    out = await polls.cast_vote_batch(batch, now_us(), votes_event)
    assert [type(o).__name__ for o in out] == ["Ballot", "Ballot", "InvalidArgument", "AlreadyExists",
                                               "NotFound", "Ballot", "Ballot"]
    assert out[6] == out[0]  # a retry inside the batch: the first answer
    assert [out[0].number, out[5].number, out[1].number] == [1, 2, 1]
    # A retry in a later batch answers the same; a batch of refusals writes no event at all.
    retries = [VoteRequest("p", 1, "v1", "", "r1"), VoteRequest("q", 0, "", "", "s0")]
    again = await polls.cast_vote_batch(retries, now_us(), votes_event)
    assert again == [out[5], out[1]]
    refused = await polls.cast_vote_batch([VoteRequest("p", 7, "z", "")], now_us(), votes_event)
    assert isinstance(refused[0], InvalidArgument)
    assert (await polls.get_poll("p")).vote_count == 2 and (await polls.get_poll("q")).vote_count == 1
    rows = [e for e in await outbox_events(polls) if e.type.startswith("polls.vote")]
    assert [e.type for e in rows] == ["polls.votes.cast"]
    carried = unpack(rows[0], VotesCast).votes
    assert sorted((v.poll_id, v.poll_vote_number, v.vote_id) for v in carried) == sorted(
        (b.poll_id, b.number, b.vote_id) for b in (out[0], out[1], out[5]))


async def test_changing_a_vote_moves_it(polls):
    await polls.create_poll("p", draft(allow_change=True), "ann", now_us(), created_events)
    first, moved, same = await polls.cast_votes(
        [VoteRequest("p", 0, "v", ""), VoteRequest("p", 2, "v", ""), VoteRequest("p", 2, "v", "")], now_us(),
        vote_event)
    assert not first.replaces_previous
    assert moved.replaces_previous and moved.previous_option == 0 and moved.previous_vote_id == first.vote_id
    assert isinstance(same, AlreadyExists)
    later, = await polls.cast_votes([VoteRequest("p", 1, "v", "")], now_us(), vote_event)
    assert later.previous_option == 2 and later.number == 3


async def test_close_by_creator_once_and_at_closing_time(polls):
    now = now_us()
    await polls.create_poll("p", draft(), "ann", now, created_events)
    await polls.create_poll("anon", draft(), "", now, created_events)
    await polls.create_poll("due", draft(closes_at=now + 1_000), "", now, created_events)
    await polls.cast_votes([VoteRequest("p", 0, "v", "")], now, vote_event)
    with pytest.raises(PermissionDenied):
        await polls.close_poll("p", "bob", now, closed_events(CloseReason.BY_CREATOR, "bob"))
    with pytest.raises(PermissionDenied):
        await polls.close_poll("anon", "bob", now, closed_events(CloseReason.BY_CREATOR, "bob"))
    with pytest.raises(NotFound):
        await polls.close_poll("nope", "bob", now, closed_events(CloseReason.BY_CREATOR, "bob"))
    closed = await polls.close_poll("p", "ann", now + 5, closed_events(CloseReason.BY_CREATOR, "ann"))
    assert closed.closed_at == now + 5
    assert await polls.close_poll("p", "ann", now + 9, closed_events(CloseReason.BY_CREATOR, "ann")) == closed
    refused, = await polls.cast_votes([VoteRequest("p", 0, "w", "")], now + 10, vote_event)
    assert isinstance(refused, FailedPrecondition)
    assert await polls.next_closing() == now + 1_000
    assert await polls.close_due(now + 500, closed_events(CloseReason.DEADLINE, "")) == []
    due = await polls.close_due(now + 2_000, closed_events(CloseReason.DEADLINE, ""))
    assert [p.id for p in due] == ["due"] and await polls.next_closing() is None
    closes = [unpack(e, events.PollClosed) for e in await outbox_events(polls)
              if e.type == "polls.poll.closed"]
    assert sorted((c.poll_id, c.accepted_votes, c.reason) for c in closes) == [
        ("due", 0, events.POLL_CLOSE_REASON_DEADLINE), ("p", 1, events.POLL_CLOSE_REASON_BY_CREATOR)]


async def test_final_results_saved_once(polls):
    await polls.create_poll("p", draft(), "ann", now_us(), created_events)
    assert await polls.save_final(FinalResults("p", {0: 3, 2: 1}, 7, 100))
    assert await polls.save_final(FinalResults("p", {0: 9}, 9, 200))
    assert await polls.final_results("p") == FinalResults("p", {0: 3, 2: 1}, 7, 100)
    assert not await polls.save_final(FinalResults("ghost", {}, 1, 1))
    assert await polls.final_results("ghost") is None


async def test_tally_changes_apply_once_and_stale_ones_are_refused(tallies):
    changes = tallies.changes()
    follower = asyncio.ensure_future(changes.__anext__())
    await asyncio.sleep(0.3)  # let a change stream open
    votes = [CountedVote("p", n, n % 2) for n in range(1, 6)]
    first = tally_change(Tally("p"), votes)
    assert await tallies.commit([first]) == set()
    stored = (await tallies.load(["p", "q"]))["p"]
    assert stored == Tally("p", {0: 2, 1: 3}, ((1, 5),), 1)
    assert (await asyncio.wait_for(follower, 10)) == stored
    assert await tallies.commit([first]) == {"p"}  # computed from version 0: refused, not counted twice
    assert tally_change(stored, votes[:2]) is None  # redelivered votes change nothing
    moved = tally_change(stored, [CountedVote("p", 6, 0, True, 1)], closed_total=6)
    assert await tallies.commit([moved, tally_change(Tally("q"), [CountedVote("q", 1, 0)])]) == set()
    after = await tallies.load(["p", "q"])
    assert after["p"].counts == {0: 3, 1: 2} and after["p"].complete and after["p"].version == 2
    assert after["q"].counts == {0: 1}
    await changes.aclose()


def test_change_result_matches_what_the_store_keeps():
    change = TallyChange("p", 0, {1: 2}, ((1, 2),), None, False, 2)
    assert change.result(Tally("p")) == Tally("p", {1: 2}, ((1, 2),), 1)
