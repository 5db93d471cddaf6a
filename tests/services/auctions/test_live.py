"""The live bid feed: fed out of order it still delivers in sequence; resume replays from the
store what the ring no longer holds; a closed auction is served from the store."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

from services.auctions import domain
from services.auctions.domain import AuctionRules
from services.auctions.live import BidFeed, LiveFrame
from services.auctions.stores.sqlite import SqliteAuctionStore


def _render_bid(auction, bid):
    return LiveFrame(bid.sequence, bid.amount, bid.amount)


def _render_close(auction):
    return LiveFrame(auction.bid_count + 1, "closed", "closed", final=True)


async def _store_with_bids(tmp_path, count: int):
    store = SqliteAuctionStore(tmp_path / "a.sqlite3")
    await store.start()
    now = datetime.now(timezone.utc)
    a = domain.new_auction(auction_id=str(uuid.uuid4()), seller_id="s", seller_name="s", product_name="x",
                           description="", currency="USD", starting_price=1, increment_currency="USD",
                           min_increment=1, auction_end=now + timedelta(minutes=5), window=timedelta(0),
                           extension=timedelta(0), now=now, rules=AuctionRules())
    await store.create_auction(a, [])
    for i in range(count):
        def decide(auction, lost_race, i=i):
            return domain.place_bid(auction, bid_id=str(uuid.uuid4()), bidder_id="b", bidder_name="b",
                                    currency="USD", amount=1 + i, now=datetime.now(timezone.utc))
        await store.place_bid(a.id, "b", "", decide, lambda plan: [])
    return store, await store.get_auction(a.id)


async def _take(frames, n):
    out = []
    async for frame in frames:
        out.append(frame.sequence)
        if len(out) == n:
            return out
    return out


async def test_out_of_order_advances_still_deliver_every_bid_in_order(tmp_path):
    store, auction = await _store_with_bids(tmp_path, 5)
    feed = BidFeed(store, _render_bid, _render_close)
    subscriber = asyncio.ensure_future(_take(feed.frames(dataclasses.replace(auction, bid_count=0), 0), 5))
    await asyncio.sleep(0)
    # bid 5's handler resumes before bid 4's: the feed fills 1..5 from the store, then ignores 4
    await feed.advance(auction)
    await feed.advance(dataclasses.replace(auction, bid_count=4))
    assert await asyncio.wait_for(subscriber, 5) == [1, 2, 3, 4, 5]
    await store.close()


async def test_resume_replays_from_the_store_beyond_the_ring(tmp_path):
    store, auction = await _store_with_bids(tmp_path, 30)
    feed = BidFeed(store, _render_bid, _render_close, capacity=8)
    await feed.advance(auction)
    assert await asyncio.wait_for(_take(feed.frames(auction, 3), 27), 5) == list(range(4, 31))
    closed = domain.close(auction, datetime.now(timezone.utc))
    frames = [f.sequence async for f in feed.frames(closed, 28)]
    assert frames == [29, 30, 31]  # stored bids, then the result
    await store.close()
