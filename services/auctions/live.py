"""Live auctions: the per-auction bid log streams read (the kit's SequencedLog, fed strictly in the
store's sequence order). A room beyond the template: the fan-out of WatchAuction and BidStream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from services.auctions.domain import CLOSED, Auction, Bid
from services.auctions.store import AuctionStore
from services.kit.streams import SequencedLog

REPLAY_PAGE = 500


@dataclass(frozen=True)
class LiveFrame:
    """One stream frame, rendered once for every subscriber: WatchAuction's and BidStream's form."""

    sequence: int
    watch: Any  # WatchAuctionResponse
    stream: Any  # BidStreamResponse
    final: bool = False  # the closing result: the stream ends after it


RenderBid = Callable[[Auction, Bid], LiveFrame]
RenderClose = Callable[[Auction], LiveFrame]


class BidFeed:
    """Every accepted bid of every auction this process serves, in sequence order, for live streams.

    Bids commit in sequence order (they serialise on the auction's row) but their handlers may
    resume out of order, so the log is only ever advanced to a sequence the store has, filling
    any gap from the store, under a per-auction lock."""

    def __init__(self, store: AuctionStore, render_bid: RenderBid, render_close: RenderClose,
                 *, capacity: int = 1024) -> None:
        self.store = store
        self.render_bid = render_bid
        self.render_close = render_close
        self.log: SequencedLog[str, LiveFrame] = SequencedLog(name="auctions", capacity=capacity)
        self._locks: dict[str, asyncio.Lock] = {}

    async def advance(self, auction: Auction, known: Bid | None = None) -> None:
        """Bring the auction's log up to `auction.bid_count` (`known` is that bid, if at hand)."""
        upto = auction.bid_count
        if upto <= self.log.last_seq(auction.id):
            return
        async with self._locks.setdefault(auction.id, asyncio.Lock()):
            last = self.log.last_seq(auction.id)
            if upto <= last:
                return
            if known is not None and known.sequence == upto == last + 1:
                self.log.append(auction.id, upto, self.render_bid(auction, known))
                return
            start = max(last, upto - self.log.capacity)
            if start > last:
                self.log.seed(auction.id, start)  # older bids are replayed from the store on demand
            for bid in await self.store.bids_between(auction.id, start, upto):
                self.log.append(auction.id, bid.sequence, self.render_bid(auction, bid))

    async def closed(self, auction: Auction) -> None:
        """Append the closing result after the last bid; subscribers receive it and end."""
        await self.advance(auction)
        async with self._locks.setdefault(auction.id, asyncio.Lock()):
            self.log.append(auction.id, auction.bid_count + 1, self.render_close(auction))
            self.log.close(auction.id)
        self._locks.pop(auction.id, None)

    async def _stored(self, auction: Auction, after: int, upto: int) -> AsyncIterator[LiveFrame]:
        while after < upto:
            page = await self.store.bids_between(auction.id, after, min(upto, after + REPLAY_PAGE))
            if not page:
                return
            for bid in page:
                yield self.render_bid(auction, bid)
            after = page[-1].sequence

    async def frames(self, auction: Auction, after: int) -> AsyncIterator[LiveFrame]:
        """Frames with sequence > `after`: stored bids, live bids, then the closing result.
        `auction` is a fresh read; a closed one is served from the store alone."""
        if auction.status == CLOSED:
            async for frame in self._stored(auction, after, auction.bid_count):
                yield frame
            if after <= auction.bid_count:
                yield self.render_close(auction)
            return
        await self.advance(auction)

        async def replay(low: int, high: int) -> list[tuple[int, LiveFrame]]:
            bids = await self.store.bids_between(auction.id, low, high)
            return [(b.sequence, self.render_bid(auction, b)) for b in bids]

        async for _, frame in self.log.subscribe(auction.id, after, replay=replay):
            yield frame
            if frame.final:
                return
