"""PollService end to end over real gRPC, on embedded and on real backends."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import grpc
import pytest
from agora.polls.v1 import polls_pb2 as pb

from services.kit.config import Settings
from services.kit.errors import field_violations
from services.mesh.launcher import Runtime
from services.polls.service import build, tally_in_process
from tests.services.polls.conftest import bearer


async def wait_results(mesh, poll_id: str, predicate, timeout: float = 20.0, what: str = "the tally"):
    deadline = time.monotonic() + timeout
    while True:
        reply = await mesh.stub.GetPoll(pb.GetPollRequest(poll_id=poll_id), timeout=5)
        if predicate(reply.results):
            return reply
        if time.monotonic() > deadline:
            raise AssertionError(
                f"gave up after {timeout:.0f}s waiting for {what}; last results: {reply.results}")
        await asyncio.sleep(0.05)


def counts(results: pb.PollResults) -> list[int]:
    return [t.votes for t in results.tallies]


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def test_create_vote_from_many_voters_duplicate_rejected_close_final(mesh):
    created = await mesh.stub.CreatePoll(pb.CreatePollRequest(
        question="Best editor?", options=["vim", "emacs", "nano"],
        vote_policy=pb.VOTE_POLICY_ONE_PER_VOTER_KEY), metadata=bearer("ann"), timeout=5)
    poll = created.poll
    assert poll.status == pb.POLL_STATUS_OPEN and poll.creator_id == "ann" and len(poll.options) == 3

    voters = [f"v{i}" for i in range(300)]
    replies = await asyncio.gather(*(
        mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=i % 3, voter_key=v), timeout=10)
        for i, v in enumerate(voters)))
    assert len({r.vote_id for r in replies}) == 300
    expected = [100, 100, 100]

    err = await rpc_error(mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=1, voter_key="v0"),
                                             timeout=5))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS

    reply = await wait_results(mesh, poll.id, lambda r: counts(r) == expected, what="300 votes counted")
    assert reply.results.total_votes == 300 and not reply.results.final

    err = await rpc_error(mesh.stub.ClosePoll(pb.ClosePollRequest(poll_id=poll.id), metadata=bearer("bob"),
                                              timeout=5))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    err = await rpc_error(mesh.stub.ClosePoll(pb.ClosePollRequest(poll_id=poll.id), timeout=5))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED

    closed = await mesh.stub.ClosePoll(pb.ClosePollRequest(poll_id=poll.id), metadata=bearer("ann"),
                                       timeout=5)
    assert closed.poll.status == pb.POLL_STATUS_CLOSED and counts(closed.results) == expected

    final = await wait_results(mesh, poll.id, lambda r: r.final, what="consolidated results")
    assert counts(final.results) == expected
    stored = await mesh.spec.servicer.polls.final_results(poll.id)
    assert stored is not None and [stored.counts.get(i, 0) for i in range(3)] == expected

    err = await rpc_error(mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=0, voter_key="late"),
                                             timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_changed_vote_moves_the_count_and_request_id_retry_counts_once(mesh):
    poll = (await mesh.stub.CreatePoll(pb.CreatePollRequest(
        question="Lunch?", options=["pizza", "salad"], vote_policy=pb.VOTE_POLICY_ONE_PER_USER,
        allow_change=True), metadata=bearer("cat"), timeout=5)).poll
    first = await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=0, request_id="r1"),
                                     metadata=bearer("dan"), timeout=5)
    again = await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=0, request_id="r1"),
                                     metadata=bearer("dan"), timeout=5)
    assert again.vote_id == first.vote_id
    same = await rpc_error(mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=0),
                                              metadata=bearer("dan"), timeout=5))
    assert same.code() == grpc.StatusCode.ALREADY_EXISTS
    moved = await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=1), metadata=bearer("dan"),
                                     timeout=5)
    assert moved.replaced_previous and moved.previous_option == 0
    await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=1), metadata=bearer("eve"), timeout=5)
    anonymous = await rpc_error(mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=1), timeout=5))
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    reply = await wait_results(mesh, poll.id, lambda r: counts(r) == [0, 2], what="the moved vote")
    assert reply.results.total_votes == 2


async def test_bad_input_statuses(mesh):
    stub = mesh.stub
    err = await rpc_error(stub.GetPoll(pb.GetPollRequest(poll_id="no-such-poll"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    err = await rpc_error(stub.CastVote(pb.CastVoteRequest(poll_id="no-such-poll", option=0), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    for options in (["only"], [f"o{i}" for i in range(101)]):
        err = await rpc_error(stub.CreatePoll(pb.CreatePollRequest(question="q", options=options), timeout=5))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    poll = (await stub.CreatePoll(pb.CreatePollRequest(question="q", options=["a", "b"]), timeout=5)).poll
    err = await rpc_error(stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=2), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    from grpc_status import rpc_status

    assert "option" in field_violations(rpc_status.from_call(err).details)
    err = await rpc_error(stub.CreatePoll(pb.CreatePollRequest(
        question="q", options=["a", "a"]), timeout=5))
    assert "options[1]" in err.details()
    err = await rpc_error(stub.ListPolls(pb.ListPollsRequest(page_token="garbage!"), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_watch_results_snapshot_updates_then_final_at_closing_time(mesh):
    closes = int(time.time()) + 2
    request = pb.CreatePollRequest(question="Soon?", options=["yes", "no"])
    request.closes_at.FromSeconds(closes)
    poll = (await mesh.stub.CreatePoll(request, timeout=5)).poll
    stream = mesh.stub.WatchResults(pb.WatchResultsRequest(poll_id=poll.id), timeout=30)
    first = await stream.read()
    assert first.results.total_votes == 0 and not first.final
    for i in range(5):
        await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=i % 2), timeout=5)
    seen = [first]
    while (message := await stream.read()) is not grpc.aio.EOF:
        seen.append(message)
    assert seen[-1].final and counts(seen[-1].results) == [3, 2]
    assert [m.sequence for m in seen] == sorted({m.sequence for m in seen})
    again = [m async for m in mesh.stub.WatchResults(pb.WatchResultsRequest(poll_id=poll.id), timeout=10)]
    assert len(again) == 1 and again[0].final


async def test_list_polls_pages_newest_first(mesh):
    ids = []
    for i in range(5):
        ids.append((await mesh.stub.CreatePoll(pb.CreatePollRequest(
            question=f"list {i}", options=["a", "b"]), metadata=bearer("lister"), timeout=5)).poll.id)
    seen, token = [], ""
    while True:
        page = await mesh.stub.ListPolls(
            pb.ListPollsRequest(page_size=2, page_token=token, creator_id="lister"), timeout=5)
        seen += [p.id for p in page.polls]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(ids))


def test_the_setting_decides_where_the_tally_runs_except_with_embedded_backends(caplog):
    real = Settings.from_env({}, backends="real")
    assert tally_in_process(real) is True  # the default: in the polls server
    assert tally_in_process(replace(real, polls_tally_in_process=False)) is False
    embedded = Settings.from_env({}, polls_tally_in_process=False)
    with caplog.at_level(logging.WARNING, logger="agora.polls"):
        assert tally_in_process(embedded) is True  # a process apart could not see the in-process bus
    assert "AGORA_POLLS_TALLY_IN_PROCESS=false ignored" in caplog.text


@pytest.mark.parametrize(("setting", "run_tally", "runs"), [
    (False, None, True),  # embedded: the setting is overridden
    (True, None, True),
    (True, False, False),  # explicit arguments (tests, benches) win
    (False, True, True),
])
async def test_build_takes_run_tally_from_the_settings_unless_given(tmp_path, setting, run_tally, runs):
    runtime = Runtime(Settings.from_env({}, data_dir=tmp_path, polls_tally_in_process=setting))
    spec = await build(runtime, run_tally=run_tally, sqlite_path=str(tmp_path / "polls.sqlite3"))
    try:
        assert (spec.consumer is not None) is runs
    finally:
        await spec.servicer.polls.close()
        await spec.servicer.tallies.close()
        await runtime.close()
