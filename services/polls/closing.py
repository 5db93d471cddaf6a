"""The closing clock: closes polls when their closes_at passes (every replica runs one; the store's
row locks make sure each poll is closed, and its `polls.poll.closed` published, once)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from services.kit.worker import Worker
from services.polls.domain import Poll, now_us

log = logging.getLogger("agora.polls.closing")


class ClosingClock:
    """Closes due polls, then sleeps until the next closing time, at most `max_sleep` seconds (so
    polls created on other replicas are seen too), or until `poll_scheduled()`; a kit Worker runs
    it between `start()` and `stop()`. When the store is away it logs and tries again `max_sleep`
    seconds later."""

    def __init__(self, next_closing: Callable[[], Awaitable[int | None]],
                 close_due: Callable[[int], Awaitable[list[Poll]]], *, max_sleep: float = 2.0) -> None:
        self.next_closing, self.close_due, self.max_sleep = next_closing, close_due, max_sleep
        self._worker = Worker(self._step, name="polls-closing-clock", backoff=max_sleep, max_backoff=max_sleep,
                              on_error=lambda exc, _: log.warning("closing clock: %s", exc))

    def poll_scheduled(self) -> None:
        """A poll with a closing time was just created here: it may be the next one due."""
        self._worker.wake()

    async def _step(self) -> float:
        closed = await self.close_due(now_us())
        if closed:
            log.info("closed %d polls at their closing time", len(closed))
        due = await self.next_closing()
        return self.max_sleep if due is None else min(max((due - now_us()) / 1e6, 0.0), self.max_sleep)

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
