"""The auctions clock: AuctionCloser closes auctions when their (possibly extended) end passes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from services.auctions.domain import Auction
from services.auctions.live import BidFeed
from services.auctions.store import AuctionStore, CloseEvents
from services.kit.worker import Worker

log = logging.getLogger("agora.auctions.live")  # the name it logged under when it lived in live.py


class AuctionCloser:
    """Closes auctions when their (possibly extended) end passes: a kit Worker sleeps until the
    soonest end, at most `poll` seconds (so auctions created or extended elsewhere are seen too),
    or until `wake()`; a store failure is logged and retried after 0.1s, doubling, at most 5s.
    `published()` is called after a round closed some (their events are in the outbox)."""

    def __init__(self, store: AuctionStore, feed: BidFeed, events: CloseEvents,
                 published: Callable[[], None] | None = None, *, poll: float = 1.0) -> None:
        self.store = store
        self.feed = feed
        self.events = events
        self.published = published
        self.poll = poll
        self._worker = Worker(self._step, name="auction-closer", backoff=0.1, max_backoff=5.0, on_error=(
            lambda exc, retry_in: log.warning("closing auctions failed (%s); retrying in %.1fs",
                                              exc, retry_in)))

    def wake(self) -> None:
        """An auction was created: its end may be sooner than the one being waited for."""
        self._worker.wake()

    async def close_due(self) -> list[Auction]:
        closed = await self.store.close_due(datetime.now(timezone.utc), self.events)
        for auction in closed:
            await self.feed.closed(auction)
            log.info("auction closed", extra={"auction_id": auction.id, "bids": auction.bid_count})
        if closed and self.published is not None:
            self.published()
        return closed

    async def _step(self) -> float:
        closed = await self.close_due()
        if len(closed) >= 100:
            return 0  # a backlog: close the next ones at once
        upcoming = await self.store.next_end()
        if upcoming is None:
            return self.poll
        return min(max((upcoming - datetime.now(timezone.utc)).total_seconds(), 0.0), self.poll)

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
