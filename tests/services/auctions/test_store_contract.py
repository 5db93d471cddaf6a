"""One contract for every auctions store adapter: SQLite and PostgreSQL (throw-away schema)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from services.auctions import domain
from services.auctions.domain import AuctionRules, BidTooLow
from services.auctions.stores.postgres import PostgresAuctionStore
from services.auctions.stores.sqlite import SqliteAuctionStore
from services.kit.errors import NotFound

RULES = AuctionRules(min_duration=timedelta(0))


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteAuctionStore(tmp_path / "auctions.sqlite3")
    else:
        s = PostgresAuctionStore(request.getfixturevalue("postgres_url"),
                                 schema=f"t{uuid.uuid4().hex[:10]}_auctions")
    await s.start()
    await s.start()  # idempotent
    try:
        yield s
    finally:
        if isinstance(s, PostgresAuctionStore):
            await s.drop()
        await s.close()


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def _auction(store, *, seller="seller", seconds=60.0, window=0.0):
    now = _now()
    a = domain.new_auction(
        auction_id=str(uuid.uuid4()), seller_id=seller, seller_name=seller, product_name="lamp",
        description="d",
        currency="USD", starting_price=100, increment_currency="USD", min_increment=10,
        auction_end=now + timedelta(seconds=seconds), window=timedelta(seconds=window),
        extension=timedelta(seconds=window), now=now, rules=RULES)
    await store.create_auction(a, [])
    return a


def _decider(bidder: str, amount: int, request_id: str = ""):
    bid_id = str(uuid.uuid4())

    def decide(auction, lost_race):
        return domain.place_bid(auction, bid_id=bid_id, bidder_id=bidder, bidder_name=bidder, currency="USD",
                                amount=amount, now=_now(), request_id=request_id, lost_race=lost_race)

    return decide


async def _bid(store, auction_id, bidder, amount, request_id=""):
    return await store.place_bid(auction_id, bidder, request_id, _decider(bidder, amount, request_id),
                                 lambda p: [])


async def test_created_auction_reads_back(store):
    a = await _auction(store)
    got = await store.get_auction(a.id)
    assert got == a
    assert await store.get_auction("missing") is None


async def test_bids_get_gapless_sequences_and_the_latest_is_the_highest(store):
    a = await _auction(store)
    for i, amount in enumerate((100, 110, 150), start=1):
        placed = await _bid(store, a.id, f"b{i}", amount)
        assert placed.bid.sequence == i
    got = await store.get_auction(a.id)
    assert got.bid_count == 3 and got.highest.amount == 150 and got.highest.bidder_id == "b3"
    assert got.minimum_next_bid == 160
    assert [b.sequence for b in await store.bids_between(a.id, 0, 3)] == [1, 2, 3]
    assert [b.sequence for b in await store.bids_between(a.id, 1, 2)] == [2]
    assert [b.sequence for b in await store.list_bids(a.id, 0, 2)] == [3, 2]
    assert [b.sequence for b in await store.list_bids(a.id, 2, 10)] == [1]


async def test_refused_bids_change_nothing(store):
    a = await _auction(store)
    await _bid(store, a.id, "b1", 100)
    with pytest.raises(BidTooLow):
        await _bid(store, a.id, "b2", 105)
    with pytest.raises(NotFound):
        await _bid(store, "missing", "b2", 500)
    assert (await store.get_auction(a.id)).bid_count == 1


async def test_a_request_id_is_answered_once(store):
    a = await _auction(store)
    first = await _bid(store, a.id, "b1", 100, "req-1")
    again = await _bid(store, a.id, "b1", 100, "req-1")
    assert again.replayed and again.bid.id == first.bid.id
    assert (await store.get_auction(a.id)).bid_count == 1


async def test_equal_concurrent_bids_one_wins(store):
    a = await _auction(store)
    results = await asyncio.gather(*(_bid(store, a.id, f"b{i}", 100) for i in range(20)),
                                   return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(accepted) == 1
    assert all(isinstance(r, (domain.Outbid, BidTooLow)) for r in refused)
    assert (await store.get_auction(a.id)).bid_count == 1


async def test_anti_sniping_extension_is_stored(store):
    a = await _auction(store, seconds=5, window=30)
    placed = await _bid(store, a.id, "b1", 100)
    assert placed.bid.extended
    assert (await store.get_auction(a.id)).ends_at == placed.bid.ends_at > a.ends_at


async def test_listing_puts_open_by_soonest_end_then_closed_and_pages(store):
    late = await _auction(store, seconds=600)
    soon = await _auction(store, seconds=300)
    ended = await _auction(store, seconds=0.05)
    mine = await _auction(store, seller="other", seconds=900)
    await asyncio.sleep(0.1)
    closed = await store.close_due(_now(), lambda auction: [])
    assert [c.id for c in closed] == [ended.id] and closed[0].status == domain.CLOSED
    everything = await store.list_auctions(0, "", 0, 10)
    assert [x.id for x in everything] == [soon.id, late.id, mine.id, ended.id]
    assert [x.id for x in await store.list_auctions(domain.OPEN, "", 1, 1)] == [late.id]
    assert [x.id for x in await store.list_auctions(domain.CLOSED, "", 0, 10)] == [ended.id]
    assert [x.id for x in await store.list_auctions(0, "other", 0, 10)] == [mine.id]
    assert (await store.next_end()) == soon.ends_at


async def test_closing_is_conditional_and_happens_once(store):
    a = await _auction(store, seconds=0.05)
    await asyncio.sleep(0.1)
    now = _now()
    first, second = await asyncio.gather(store.close_due(now, lambda x: []),
                                         store.close_due(now, lambda x: []))
    assert len(first) + len(second) == 1
    with pytest.raises(domain.AuctionClosed):
        await _bid(store, a.id, "b1", 100)
    assert (await store.get_auction(a.id)).closed_at is not None


async def test_bid_and_close_write_their_events_to_the_outbox(store):
    from agora.identity.v1.identity_pb2 import WhoAmIRequest

    from services.kit.bus import new_envelope

    def event(_):
        return [new_envelope("auctions.test", "auctions", "k", WhoAmIRequest())]

    a = await _auction(store, seconds=0.3)
    await store.place_bid(a.id, "b1", "", _decider("b1", 100), event)
    await asyncio.sleep(0.35)
    await store.close_due(_now(), event)
    conn = store.relay_connection()
    try:
        assert len(store.outbox.claim(conn, 10)) == 2
        store.outbox.release(conn)
    finally:
        conn.close()
