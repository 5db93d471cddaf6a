"""Bounded fan-out for live streams, written once for every domain.

Two shapes (services/README.md, "The kit"):

- `SnapshotFeed`: the latest value per key (poll tallies, auction state, product stock).
  Subscribers hold no queue: they read the newest value when woken, at most every
  `min_interval`, so a slow reader simply skips intermediate values.
- `SequencedLog`: per-key entries with increasing sequence numbers (bids, chat, order status,
  audit). One shared ring buffer per key; each subscriber keeps only a cursor. A new subscriber
  replays what it missed (from the ring, or the store via `replay`) before going live; one that
  falls further behind than the ring holds is ended with RESOURCE_EXHAUSTED and can resume.

Both keep memory bounded whatever the number or speed of subscribers. Each counts its subscribers
in the `agora_stream_subscribers{feed, kind}` gauge; `feed` is the domain that made it unless named.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from services.kit.errors import ResourceExhausted
from services.kit.telemetry import metrics

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    value: T | None = None  # the newest value published
    version: int = 0
    shown: T | None = None  # what subscribers are woken with: `value` as of the last tick
    shown_version: int = 0
    shown_at: float = float("-inf")
    closed: bool = False
    subscribers: int = 0
    tick: asyncio.TimerHandle | None = None
    waiters: list[asyncio.Future] = field(default_factory=list)


class SnapshotFeed(Generic[K, T]):
    """Latest value per key, shown to subscribers at most every `min_interval` per key.

    The rate limit is one timer per key, not one per subscriber: a publish after a quiet spell is
    shown at once, a burst is shown when the key's tick comes, and every subscriber of the key is
    woken by the same tick (a thousand watchers of one poll cost one timer, not a thousand)."""

    def __init__(self, *, name: str, min_interval: float = 0.1) -> None:
        self.min_interval = min_interval
        self._slots: dict[K, _Slot[T]] = {}
        self.name = name  # the metrics label: the domain that feeds it
        self._gauge = metrics.stream_subscribers(self.name, "snapshot")

    def publish(self, key: K, value: T) -> None:
        """Replace the latest value for `key` (ignored once the key is closed)."""
        slot = self._slots.setdefault(key, _Slot())
        if slot.closed:
            return
        slot.value = value
        slot.version += 1
        if slot.tick is None:
            loop = asyncio.get_running_loop()
            wait = slot.shown_at + self.min_interval - loop.time()
            if wait <= 0:
                self._show(slot)
            else:
                slot.tick = loop.call_later(wait, self._show, slot)

    def close(self, key: K, final: T) -> None:
        """Publish `final` at once; every subscriber receives it and its stream ends."""
        slot = self._slots.setdefault(key, _Slot())
        slot.value = final
        slot.version += 1
        slot.closed = True
        self._show(slot)

    @staticmethod
    def _show(slot: _Slot[T]) -> None:
        if slot.tick is not None:
            slot.tick.cancel()
            slot.tick = None
        slot.shown, slot.shown_version = slot.value, slot.version
        slot.shown_at = asyncio.get_running_loop().time()
        waiters, slot.waiters = slot.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def latest(self, key: K) -> T | None:
        slot = self._slots.get(key)
        return slot.value if slot else None

    def subscribers(self, key: K) -> int:
        slot = self._slots.get(key)
        return slot.subscribers if slot else 0

    async def subscribe(self, key: K, initial: T | None = None) -> AsyncIterator[T]:
        """Yield the current value at once (or `initial` if nothing was published yet), then
        coalesced updates; ends after the final value of a closed key."""
        slot = self._slots.setdefault(key, _Slot())
        if slot.value is None and initial is not None:
            slot.value = initial
            slot.version += 1
        slot.subscribers += 1
        self._gauge.inc()
        loop = asyncio.get_running_loop()
        try:
            seen = 0
            if slot.value is not None:
                seen = slot.version
                yield slot.value
            while not (slot.closed and seen >= slot.shown_version):
                if slot.shown_version > seen:
                    seen = slot.shown_version
                    yield slot.shown  # type: ignore[misc]
                else:
                    # A future of our own per wait (not a shared one: cancelling this stream must
                    # not cancel the others' wait), made on the loop we hold: the next tick wakes it.
                    waiter = loop.create_future()
                    slot.waiters.append(waiter)
                    try:
                        await waiter
                    except asyncio.CancelledError:
                        if waiter in slot.waiters:  # a quiet key keeps no trace of departed watchers
                            slot.waiters.remove(waiter)
                        raise
        finally:
            slot.subscribers -= 1
            self._gauge.dec()

    def forget(self, key: K) -> None:
        """Drop a key's slot (after it closed and its subscribers left)."""
        slot = self._slots.get(key)
        if slot and slot.subscribers == 0:
            if slot.tick is not None:
                slot.tick.cancel()
            del self._slots[key]


Replay = Callable[[int, int], Awaitable[list[tuple[int, T]]]]


@dataclass
class _Ring(Generic[T]):
    entries: deque = field(default_factory=deque)
    last_seq: int = 0
    closed: bool = False
    subscribers: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SequencedLog(Generic[K, T]):
    def __init__(self, *, name: str, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._rings: dict[K, _Ring[T]] = {}
        self.name = name  # the metrics label: the domain that feeds it
        self._gauge = metrics.stream_subscribers(self.name, "log")

    def _ring(self, key: K) -> _Ring[T]:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = _Ring(entries=deque(maxlen=self.capacity))
        return ring

    def append(self, key: K, seq: int, item: T) -> None:
        """Add the entry with sequence `seq` (already assigned by the store). Out-of-order or
        repeated sequences (a redelivered event) are ignored: the log only moves forward."""
        ring = self._ring(key)
        if seq <= ring.last_seq:
            return
        ring.entries.append((seq, item))
        ring.last_seq = seq
        ring.wake()

    def seed(self, key: K, last_seq: int) -> None:
        """Tell the log how far the store already is (after a restart), so a subscriber resuming
        from an older sequence replays the gap from the store instead of missing it."""
        ring = self._ring(key)
        if last_seq > ring.last_seq:
            ring.entries.clear()
            ring.last_seq = last_seq

    def close(self, key: K) -> None:
        """No more entries for `key`: subscribers drain what is left and end."""
        ring = self._ring(key)
        ring.closed = True
        ring.wake()

    def forget(self, key: K) -> bool:
        """Free a key's ring once nobody reads it (a closed auction, an idle room); True if freed.
        A later subscriber starts from the store through `replay` (after `seed`)."""
        ring = self._rings.get(key)
        if ring is None or ring.subscribers:
            return False
        del self._rings[key]
        return True

    def last_seq(self, key: K) -> int:
        ring = self._rings.get(key)
        return ring.last_seq if ring else 0

    def subscribers(self, key: K) -> int:
        ring = self._rings.get(key)
        return ring.subscribers if ring else 0

    async def subscribe(self, key: K, resume_from: int = 0, *, replay: Replay | None = None,
                        start_at_tail: bool = False) -> AsyncIterator[tuple[int, T]]:
        """Yield (seq, item) for every entry after `resume_from`, then live entries.

        `replay(after, upto)` returns stored entries with after < seq <= upto, for what the ring
        no longer holds. `start_at_tail` skips history when `resume_from` is 0 (live only)."""
        ring = self._ring(key)
        cursor = ring.last_seq if (start_at_tail and resume_from == 0) else resume_from
        ring.subscribers += 1
        self._gauge.inc()
        try:
            first = True
            while True:
                oldest = ring.entries[0][0] if ring.entries else ring.last_seq + 1
                if cursor + 1 < oldest and cursor < ring.last_seq:
                    # The ring no longer holds cursor+1. At the start that is history to replay;
                    # later it means this subscriber fell behind the ring: end it, it can resume.
                    if not first or replay is None:
                        metrics.stream_overflows(self.name).inc()
                        raise ResourceExhausted(
                            f"stream consumer fell more than {self.capacity} entries behind; "
                            f"resume with resume_from={cursor}"
                        )
                    for seq, item in await replay(cursor, oldest - 1):
                        if seq > cursor:
                            cursor = seq
                            yield seq, item
                    cursor = max(cursor, oldest - 1)
                first = False
                pending = [(s, i) for s, i in list(ring.entries) if s > cursor]
                for seq, item in pending:
                    if seq > cursor:
                        cursor = seq
                        yield seq, item
                if cursor >= ring.last_seq:
                    if ring.closed:
                        return
                    await ring.changed.wait()
        finally:
            ring.subscribers -= 1
            self._gauge.dec()
