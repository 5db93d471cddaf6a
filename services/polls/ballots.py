"""Group commit for CastVote: votes that arrive while a transaction is running share the next one.

At low load every vote has a transaction to itself (no added wait); under load one transaction
records hundreds of votes and their outbox events, which is what lets a hot poll take thousands
of votes a second on one locked row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from services.kit.errors import DomainError
from services.polls.domain import Ballot, VoteRequest

log = logging.getLogger("agora.polls.ballots")

Record = Callable[[Sequence[VoteRequest]], Awaitable[list[Ballot | DomainError]]]


class BallotBox:
    def __init__(self, record: Record, *, max_batch: int = 1000, concurrency: int = 1,
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self.record, self.max_batch, self.concurrency, self.on_commit = record, max_batch, concurrency, on_commit
        self._queue: list[tuple[VoteRequest, asyncio.Future]] = []
        self._running = 0
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    async def cast(self, request: VoteRequest) -> Ballot:
        """Record one vote; raises the DomainError that refused it."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        self._kick()
        # Shielded: a caller that gives up does not undo a vote the batch may already have recorded.
        outcome = await asyncio.shield(future)
        if isinstance(outcome, DomainError):
            raise outcome
        return outcome

    def _kick(self) -> None:
        if self._queue and self._running < self.concurrency:
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._commit_batches())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _commit_batches(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch:]
                try:
                    outcomes = await self.record([r for r, _ in batch])
                except Exception as exc:  # noqa: BLE001 - every vote of the batch fails with the store's error
                    log.warning("recording %d votes failed: %s", len(batch), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.on_commit()
                for (_, future), outcome in zip(batch, outcomes):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._running -= 1
