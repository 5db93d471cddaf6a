"""The closing clock: closes polls when their closes_at passes (every replica runs one; the store's
row locks make sure each poll is closed, and its `polls.poll.closed` published, once)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from services.kit.worker import Worker
from services.polls.domain import CloseReason, now_us
from services.polls.events import closed_events
from services.polls.store import PollStore

log = logging.getLogger("agora.polls.closing")

_AT_DEADLINE = closed_events(CloseReason.DEADLINE, "")


class ClosingClock:
    """Closes due polls, then sleeps until the next closing time, at most `max_sleep` seconds (so
    polls created on other replicas are seen too), or until `poll_scheduled()`; a kit Worker runs
    it between `start()` and `stop()`. When the store is away it logs and tries again `max_sleep`
    seconds later. `wake()` (the outbox relay's) runs after a step that closed polls."""

    def __init__(self, polls: PollStore, *, wake: Callable[[], None] = lambda: None,
                 max_sleep: float = 2.0) -> None:
        self.polls, self.wake, self.max_sleep = polls, wake, max_sleep
        self._worker = Worker(self._step, name="polls-closing-clock", backoff=max_sleep,
                              max_backoff=max_sleep,
                              on_error=lambda exc, _: log.warning("closing clock: %s", exc))

    def poll_scheduled(self) -> None:
        """A poll with a closing time was just created here: it may be the next one due."""
        self._worker.wake()

    async def _step(self) -> float:
        closed = await self.polls.close_due(now_us(), _AT_DEADLINE)
        if closed:
            self.wake()
            log.info("closed %d polls at their closing time", len(closed))
        due = await self.polls.next_closing()
        return self.max_sleep if due is None else min(max((due - now_us()) / 1e6, 0.0), self.max_sleep)

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
