"""Audit's live feed: every recorded event, in sequence order, for WatchEvents to fan out.

A room the template has no name for (README: `live.py` / `feed.py`, the fan-out of a watch stream):
writes finish in any order, so `InOrder` hands them to the log in sequence order, and the feed runs
beside the servicer as a worker (`start()` seeds the log at the store's last sequence).
"""

from __future__ import annotations

import asyncio
import time

from services.audit.domain import AuditEvent
from services.audit.store import AuditStore
from services.kit.streams import SequencedLog

STREAM = "all"  # one log for every event; each WatchEvents subscriber filters it


class InOrder:
    """Feeds recorded events to the live log in sequence order, though writes finish in any order.
    A sequence that never completes (a failed write) is skipped after `gap_wait` seconds."""

    def __init__(self, log_: SequencedLog, next_seq: int, *, gap_wait: float = 1.0) -> None:
        self.log = log_
        self.next = next_seq
        self.ready: dict[int, AuditEvent] = {}
        self.gap_wait = gap_wait
        self._gap_since: float | None = None

    def done(self, event: AuditEvent) -> None:
        if event.sequence < self.next:
            return
        self.ready[event.sequence] = event
        self.flush()

    def flush(self) -> None:
        while self.next in self.ready:
            event = self.ready.pop(self.next)
            self.log.append(STREAM, event.sequence, event)
            self.next += 1
        self._gap_since = (self._gap_since or time.monotonic()) if self.ready else None

    def skip_gaps(self) -> None:
        if self.ready and self._gap_since is not None and time.monotonic() - self._gap_since >= self.gap_wait:
            self.next = min(self.ready)
            self._gap_since = None
            self.flush()


class AuditFeed:
    """The live log of recorded events. Between `start()` and `stop()` it is fed in order and its
    gaps are skipped; `record()` is the one path that stores an event and streams it."""

    def __init__(self, store: AuditStore, *, capacity: int = 1024) -> None:
        self.store = store
        self.log: SequencedLog[str, AuditEvent] = SequencedLog(name="audit", capacity=capacity)
        self.order: InOrder | None = None
        self._gaps: asyncio.Task | None = None

    async def start(self) -> None:
        last = await self.store.last_sequence()
        self.log.seed(STREAM, last)
        self.order = InOrder(self.log, last + 1)
        self._gaps = asyncio.get_running_loop().create_task(self._skip_gaps())

    async def stop(self) -> None:
        if self._gaps is not None:
            self._gaps.cancel()

    async def _skip_gaps(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.order.skip_gaps()

    async def record(self, event: AuditEvent) -> AuditEvent:
        recorded, new = await self.store.record(event)
        if new and self.order is not None:
            self.order.done(recorded)
        return recorded
