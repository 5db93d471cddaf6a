"""PresenceKeeper: keeps this replica's connections marked alive and retires those of replicas that died.

A connection that stops answering is closed by gRPC keepalive (or the bridge's WebSocket ping),
and its stream's end records the leave. A whole replica that dies cannot; its connections stop
being touched, and any surviving replica turns them into LEAVE entries after `stale_after`.
A room of its own, not clocks.py: it keeps who-is-here (a worker in ServiceSpec.workers all the same).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from services.chat.feed import RoomFeed
from services.chat.store import ChatStore
from services.kit.worker import Worker

log = logging.getLogger("agora.chat")


class PresenceKeeper:
    """`tick()` every `interval` seconds, in a kit Worker between `start()` and `stop()`; a failed
    tick is logged and tried again next round. `wake` tells the outbox relay a leave was written."""

    def __init__(self, store: ChatStore, feed: RoomFeed, wake: Callable[[], None], replica: str, *,
                 interval: float = 10.0, stale_after: float = 45.0, outbox_keep: float = 3600.0) -> None:
        self.store, self.feed, self.wake, self.replica = store, feed, wake, replica
        self.interval, self.stale_after, self.outbox_keep = interval, stale_after, outbox_keep
        self._worker = Worker(self._tick, name="chat-presence", backoff=interval, max_backoff=interval,
                              on_error=lambda exc, _: log.warning("presence upkeep failed: %s", exc))
        self._last_prune = 0.0

    async def tick(self) -> None:
        now = time.time()
        await self.store.touch(self.replica, now)
        for connection_id in await self.store.stale_connections(now - self.stale_after):
            leave = await self.store.disconnect(connection_id, True, now)
            if leave is not None:
                self.wake()
                await self.feed.deliver(leave)
        if now - self._last_prune > self.outbox_keep / 4:
            self._last_prune = now
            await self.store.prune_outbox(self.outbox_keep)

    async def _tick(self) -> float:
        await self.tick()
        return self.interval

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
