"""Per-key lanes: events with the same key are handled one after another, different keys concurrently."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

_keyless = itertools.count()


class KeyedLanes(Generic[T]):
    """Runs `work(item)` for each item put, in put order within a key.

    An item stays at the head of its lane until its work returns, so `stop()` can hand back
    everything not yet finished (the in-flight item first) for redelivery."""

    def __init__(self, work: Callable[[T], Awaitable[Any]]) -> None:
        self._work = work
        self._lanes: dict[Any, deque[T]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, key: str, item: T) -> None:
        # An event without a key has no order to keep: give it a lane of its own.
        lane_key: Any = key if key else ("", next(_keyless))
        lane = self._lanes.get(lane_key)
        if lane is not None:
            lane.append(item)
            return
        lane = self._lanes[lane_key] = deque([item])
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(self._run(lane_key, lane))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, lane_key: Any, lane: deque[T]) -> None:
        try:
            while lane:
                await self._work(lane[0])
                lane.popleft()
        finally:
            # A cancelled lane keeps its items so stop() can hand them back.
            if self._lanes.get(lane_key) is lane and not lane:
                del self._lanes[lane_key]
            if not self._lanes:
                self._idle.set()

    def __len__(self) -> int:
        return sum(len(lane) for lane in self._lanes.values())

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every lane is empty; False when `timeout` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def stop(self) -> list[T]:
        """Cancel running work and return the unfinished items, lane by lane in order."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        left = [item for lane in self._lanes.values() for item in lane]
        self._lanes.clear()
        self._idle.set()
        return left
