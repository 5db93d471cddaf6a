"""RoomFeed: this process's live view of each room, in sequence order, over the kit's SequencedLog.

Entries reach the feed from this replica's own writes and from other replicas' events, in any
order. The store is the source of truth: an entry that arrives ahead of one still missing
(another replica's, not yet delivered) first pulls the gap from the store, so subscribers see
every sequence once, in order. A room is seeded from the store the first time someone here
watches it; until then its events are ignored (the seed reads them from the store anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from agora.chat.v1 import chat_pb2

from services.chat.domain import Entry
from services.chat.store import ChatStore
from services.chat.wire import message_proto
from services.kit.errors import NotFound
from services.kit.streams import SequencedLog


class RoomFeed:
    def __init__(self, store: ChatStore, *, capacity: int = 1024, replay_page: int = 500) -> None:
        self.store = store
        self.capacity = capacity
        self.replay_page = replay_page
        self.log: SequencedLog[str, chat_pb2.Message] = SequencedLog(name="chat", capacity=capacity)
        self._seeded: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def ensure(self, room_id: str) -> int:
        """Seed the room from the store if this process has not yet; the feed's latest sequence.
        NotFound when there is no such room."""
        if room_id not in self._seeded:
            async with self._lock(room_id):
                if room_id not in self._seeded:
                    last = await self.store.last_sequence(room_id)
                    if last is None:
                        raise NotFound.of("room", room_id)
                    self.log.seed(room_id, last)
                    self._seeded.add(room_id)
        return self.log.last_seq(room_id)

    async def deliver(self, entry: Entry) -> None:
        """Hand a stored entry to local subscribers; repeated or old entries are ignored."""
        room_id = entry.room_id
        if room_id not in self._seeded or entry.sequence <= self.log.last_seq(room_id):
            return
        async with self._lock(room_id):
            last = self.log.last_seq(room_id)
            if entry.sequence <= last:
                return
            if entry.sequence > last + 1:
                # Earlier entries are committed (sequences commit in order) but not here yet.
                start = max(last, entry.sequence - 1 - self.capacity)
                gap = await self.store.entries_after(room_id, start, entry.sequence - 1, self.capacity)
                for missing in gap:
                    self.log.append(room_id, missing.sequence, message_proto(missing))
            self.log.append(room_id, entry.sequence, message_proto(entry))

    async def _replay(self, room_id: str, after: int, upto: int) -> list[tuple[int, chat_pb2.Message]]:
        entries = await self.store.entries_after(room_id, after, upto, max(upto - after, 1))
        return [(e.sequence, message_proto(e)) for e in entries]

    async def subscribe(self, room_id: str, after: int) -> AsyncIterator[chat_pb2.Message]:
        """Every entry with sequence > after: the old ones from the store, page by page, then live.
        Ends with RESOURCE_EXHAUSTED (from the log) if the subscriber falls behind the ring."""
        cursor = after
        # Far behind: page through the store until close to the live tail, so no replay is unbounded.
        while self.log.last_seq(room_id) - cursor > self.capacity // 2:
            page = await self.store.entries_after(room_id, cursor, None, self.replay_page)
            for entry in page:
                cursor = entry.sequence
                yield message_proto(entry)
            if len(page) < self.replay_page:
                break

        async def replay(a: int, b: int) -> list[tuple[int, chat_pb2.Message]]:
            return await self._replay(room_id, a, b)

        await self.ensure(room_id)  # re-seed if the room was forgotten meanwhile; no await after this
        try:
            async with contextlib.aclosing(self.log.subscribe(room_id, cursor, replay=replay)) as live:
                async for _, message in live:
                    yield message
        finally:
            if self.log.subscribers(room_id) == 0 and self.log.forget(room_id):
                # Nobody here watches the room any more: free its ring; the next watcher re-seeds.
                self._seeded.discard(room_id)

    def watchers(self, room_id: str) -> int:
        return self.log.subscribers(room_id)
