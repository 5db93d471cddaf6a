"""Group commit for CastVote: votes that arrive while a transaction is running share the next one.

At low load every vote has a transaction to itself (no added wait); under load one transaction
records hundreds of votes and their outbox events, which is what lets a hot poll take thousands
of votes a second on one locked row. A room beside the template's (services/README.md): group
commit is polls' own. The box is given the store and the relay's `wake` when it is made, so a
vote goes one way: servicer -> box -> store (events.vote_event in its transaction) -> wake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from services.kit.errors import DomainError
from services.polls.domain import Ballot, VoteRequest, now_us
from services.polls.events import vote_event
from services.polls.store import PollStore

log = logging.getLogger("agora.polls.ballots")


class BallotBox:
    """`wake()` runs after each committed batch (the outbox relay's: its events go out now)."""

    def __init__(self, polls: PollStore, *, wake: Callable[[], None] = lambda: None, max_batch: int = 1000,
                 concurrency: int = 1) -> None:
        self.polls, self.wake, self.max_batch, self.concurrency = polls, wake, max_batch, concurrency
        self._queue: list[tuple[VoteRequest, asyncio.Future]] = []
        self._running = 0
        self._tasks: set[asyncio.Task] = set()
        self.batches = 0

    async def record(self, requests: Sequence[VoteRequest]) -> list[Ballot | DomainError]:
        """One batch in one transaction: the votes, and one `polls.vote.cast` event each."""
        return await self.polls.cast_votes(requests, now_us(), vote_event)

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
                except Exception as exc:  # noqa: BLE001 - every vote of the batch fails with the store's
                    log.warning("recording %d votes failed: %s", len(batch), exc)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.wake()
                for (_, future), outcome in zip(batch, outcomes):
                    if not future.done():
                        future.set_result(outcome)
        finally:
            self._running -= 1
