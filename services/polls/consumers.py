"""The tally consumer: counts `polls.vote.cast` and `polls.votes.cast` (a CastVotes batch) into the
live tallies, consolidates closed polls.

Votes arrive one event (one vote, or one CastVotes batch of them) per handler call; the handler
hands its votes to a batch and returns when the batch is written, so the bus acknowledges only
counted votes. A batch is one conditional write per poll (`TallyStore.commit`): the vote numbers
it applies are recorded in the same write, so a redelivered vote (or batch) is skipped, never
counted twice. When a poll has closed and every vote
accepted before the close is counted, its results are saved as final in the poll store.

A consumer (ServiceSpec.consumers), not a worker: it is driven by the bus, and its batching task
lives exactly as long as its subscription, so `subscribe(bus)` starts both and `cancel()` ends both.
The same consumer runs alone, scaled apart from the API: `python -m services.polls.handlers`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from agora.events.v1 import polls_pb2 as events
from agora.events.v1.envelope_pb2 import Envelope
from agora.polls.v1.polls_pb2 import VotesCast

from services.kit.bus.envelopes import unpack
from services.kit.bus.port import EventBus, Subscription
from services.polls.domain import CountedVote, Tally, TallyChange, now_us, tally_change
from services.polls.events import POLL_CLOSED, VOTE_CAST, VOTES_CAST
from services.polls.store import FinalResults, PollStore, TallyStore

log = logging.getLogger("agora.polls.tally")

GROUP = "polls.tally"


@dataclass
class _Pending:
    votes: list[CountedVote] = field(default_factory=list)
    closed_total: int | None = None
    waiters: list[asyncio.Future] = field(default_factory=list)


class TallyConsumer:
    """One per process; several processes share the work through the bus group."""

    def __init__(self, polls: PollStore, tallies: TallyStore, *, group: str = GROUP,
                 linger: float = 0.005, max_batch: int = 2000, prefetch: int = 1000) -> None:
        self.polls, self.tallies = polls, tallies
        self.group, self.linger, self.max_batch, self.prefetch = group, linger, max_batch, prefetch
        self._pending: dict[str, _Pending] = {}
        self._size = 0
        self._arrived = asyncio.Event()
        self._known: dict[str, Tally] = {}  # last tally written or read, per poll (saves a read per batch)
        self._task: asyncio.Task | None = None
        self._subscription: Subscription | None = None
        self.counted = 0
        self.batches = 0

    async def subscribe(self, bus: EventBus) -> TallyConsumer:
        """Start the batching task, then consume the group; returns what cancels both (this consumer)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="polls-tally")
        self._subscription = await bus.subscribe(self.group, [VOTE_CAST, VOTES_CAST, POLL_CLOSED],
                                                 self.handle,
                                                 prefetch=self.prefetch)
        return self

    async def cancel(self) -> None:
        """Stop consuming (the handlers running finish: the batch in flight is written and
        acknowledged), then end the batching task. Safe to call again after a timeout."""
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def handle(self, envelope: Envelope) -> None:
        if envelope.type == VOTE_CAST:
            votes = [unpack(envelope, events.VoteCast)]
        elif envelope.type == VOTES_CAST:
            # Each vote is counted by its own (poll, poll_vote_number), as a single event's is, so a
            # redelivered batch (or one that overlaps single events) counts nothing twice.
            votes = list(unpack(envelope, VotesCast).votes)
        elif envelope.type == POLL_CLOSED:
            closed = unpack(envelope, events.PollClosed)
            pending = self._pending.setdefault(closed.poll_id, _Pending())
            pending.closed_total = closed.accepted_votes
            await self._wait(pending)
            return
        else:
            return
        touched: dict[str, _Pending] = {}
        for vote in votes:
            pending = touched[vote.poll_id] = self._pending.setdefault(vote.poll_id, _Pending())
            pending.votes.append(CountedVote(vote.poll_id, vote.poll_vote_number, vote.option,
                                             vote.replaces_previous, vote.previous_option))
        if touched:
            # The batch's waiter sits on one poll's entry: the whole pending map is written (or
            # fails) as one batch, so the event is acknowledged only once all of its votes are.
            await self._wait(next(iter(touched.values())), len(votes))

    async def _wait(self, pending: _Pending, size: int = 1) -> None:
        done = asyncio.get_running_loop().create_future()
        pending.waiters.append(done)
        self._size += size
        self._arrived.set()
        await done

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if self._size < self.max_batch and self.linger:
                await asyncio.sleep(self.linger)  # gather the burst that is arriving
            self._arrived.clear()
            batch, self._pending, self._size = self._pending, {}, 0
            waiters = [w for p in batch.values() for w in p.waiters]
            try:
                await self._apply(batch)
            except Exception as exc:  # noqa: BLE001 - the events fail and the bus retries them
                log.warning("tally batch of %d events failed: %s", len(waiters), exc)
                self._known.clear()
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _apply(self, batch: dict[str, _Pending]) -> None:
        todo = dict(batch)
        for _ in range(20):
            missing = [p for p in todo if p not in self._known]
            self._known.update(await self.tallies.load(missing))
            changes: list[TallyChange] = []
            for poll_id, pending in todo.items():
                tally = self._known.get(poll_id) or Tally(poll_id)
                change = tally_change(tally, pending.votes, pending.closed_total)
                if change is not None:
                    changes.append(change)
            refused = await self.tallies.commit(changes)
            for change in changes:
                if change.poll_id in refused:
                    self._known.pop(change.poll_id, None)
                    continue
                before = self._known.get(change.poll_id) or Tally(change.poll_id)
                self._known[change.poll_id] = change.result(before)
                self.counted += change.votes
            self.batches += 1
            todo = {p: todo[p] for p in refused}
            if not todo:
                break
        else:
            raise RuntimeError(f"tallies of {sorted(todo)} kept changing under this consumer")
        await self._consolidate([p for p in batch if p in self._known])
        if len(self._known) > 50_000:
            self._known.clear()

    async def _consolidate(self, poll_ids: list[str]) -> None:
        """Save final results of polls that are closed and fully counted, then mark their tally final."""
        for poll_id in poll_ids:
            tally = self._known[poll_id]
            if not tally.complete or tally.final:
                continue
            saved = await self.polls.save_final(
                FinalResults(poll_id, dict(tally.counts), tally.version + 1, now_us()))
            if not saved:
                log.warning("poll %s closed but is not in this poll store; left unconsolidated", poll_id)
                continue
            change = tally_change(tally, (), final=True)
            assert change is not None
            if poll_id in await self.tallies.commit([change]):
                self._known.pop(poll_id, None)  # another replica got there first; it marks it final
            else:
                self._known[poll_id] = change.result(tally)
