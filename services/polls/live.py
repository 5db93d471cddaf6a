"""Live results for WatchResults: tally changes in, coalesced snapshots out (kit's SnapshotFeed).

Where the changes come from is the tally store's business: MongoDB's change stream (so a watcher
on any replica sees the tally written by the consumer on any other replica), or, embedded, the
SQLite store's own writes. This board only keeps, per watched poll, the newest version, and renders
it through wire.py with the poll's definition (PollDefinitions: a cache the servicer fills as it
reads polls), so a tally goes one way: tally store -> board -> watchers. A room beside the
template's (services/README.md): the fan-out of a watch stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from agora.polls.v1 import polls_pb2 as pb

from services.kit.streams import SnapshotFeed
from services.polls import wire
from services.polls.domain import Poll, Tally
from services.polls.store import PollStore, TallyStore

log = logging.getLogger("agora.polls.live")

Message = pb.WatchResultsResponse


class PollDefinitions:
    """Polls by id, as read (a poll's question and options never change, which is all rendering a
    tally needs): the servicer remembers what it reads, the board renders from it."""

    def __init__(self, polls: PollStore, *, limit: int = 10_000) -> None:
        self.polls, self.limit = polls, limit
        self._known: dict[str, Poll] = {}

    def remember(self, poll: Poll) -> None:
        if len(self._known) > self.limit:
            self._known.clear()
        self._known[poll.id] = poll

    async def get(self, poll_id: str) -> Poll | None:
        poll = self._known.get(poll_id) or await self.polls.get_poll(poll_id)
        if poll is not None:
            self.remember(poll)
        return poll


class ResultsBoard:
    """Renders a watched poll's newer tallies (wire.tally_watch_message) and publishes them."""

    def __init__(self, tallies: TallyStore, definitions: PollDefinitions, *,
                 min_interval: float = 0.1) -> None:
        self.tallies = tallies
        self.definitions = definitions
        self.feed: SnapshotFeed[str, Message] = SnapshotFeed(name="polls", min_interval=min_interval)
        self._versions: dict[str, int] = {}
        self._interest: dict[str, int] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="polls-results-board")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _follow(self) -> None:
        while True:
            changes = self.tallies.changes()
            try:
                async for tally in changes:
                    await self.offer(tally)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following tally changes failed; starting again")
                await asyncio.sleep(0.5)
            finally:
                await changes.aclose()

    async def render(self, tally: Tally) -> Message | None:
        """The stream's message for a tally (None: a poll this store does not know, skipped)."""
        poll = await self.definitions.get(tally.poll_id)
        return None if poll is None else wire.tally_watch_message(poll, tally)

    async def offer(self, tally: Tally) -> None:
        """Publish a newer tally of a watched poll (older or unwatched ones are ignored)."""
        if not self._interest.get(tally.poll_id):
            return
        if tally.version <= self._versions.get(tally.poll_id, -1):
            return
        message = await self.render(tally)
        if message is None or tally.version <= self._versions.get(tally.poll_id, -1):
            return
        self._versions[tally.poll_id] = tally.version
        if tally.final:
            self.feed.close(tally.poll_id, message)
        else:
            self.feed.publish(tally.poll_id, message)

    async def watch(self, poll_id: str,
                    read: Callable[[], Awaitable[tuple[Message, int, bool]]]) -> AsyncIterator[Message]:
        """The poll's current results at once, then newer snapshots, ending after the final one.

        `read()` returns (message, version, final) from the stores; interest is registered
        before it runs, so a change landing meanwhile is published, not lost."""
        self._interest[poll_id] = self._interest.get(poll_id, 0) + 1
        try:
            initial, version, final = await read()
            if final:
                yield initial
                return
            if version > self._versions.get(poll_id, -1):
                self._versions[poll_id] = version
                self.feed.publish(poll_id, initial)
            async with contextlib.aclosing(self.feed.subscribe(poll_id, initial)) as stream:
                async for message in stream:
                    yield message
        finally:
            self._interest[poll_id] -= 1
            if not self._interest[poll_id]:
                del self._interest[poll_id]
                self._versions.pop(poll_id, None)
                self.feed.forget(poll_id)
