"""The closing clock: closes polls when their closes_at passes (every replica runs one; the store's
row locks make sure each poll is closed, and its `polls.poll.closed` published, once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from services.polls.domain import Poll, now_us

log = logging.getLogger("agora.polls.closing")


class ClosingClock:
    def __init__(self, next_closing: Callable[[], Awaitable[int | None]],
                 close_due: Callable[[int], Awaitable[list[Poll]]], *, max_sleep: float = 2.0) -> None:
        self.next_closing, self.close_due, self.max_sleep = next_closing, close_due, max_sleep
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def poll_scheduled(self) -> None:
        """A poll with a closing time was just created here: it may be the next one due."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                closed = await self.close_due(now_us())
                if closed:
                    log.info("closed %d polls at their closing time", len(closed))
                due = await self.next_closing()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the store is away; try again shortly
                log.warning("closing clock: %s", exc)
                due = None
            sleep = self.max_sleep if due is None else min(max((due - now_us()) / 1e6, 0.0), self.max_sleep)
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="polls-closing-clock")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
