"""The chat gRPC servicer (proto in, proto out) and `build`, which names store, feed, bus and presence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc
from agora.chat.v1 import chat_pb2, chat_pb2_grpc

from services.chat import domain
from services.chat.consumers import RoomFanout, replica_name
from services.chat.domain import Author
from services.chat.feed import RoomFeed
from services.chat.presence import PresenceKeeper
from services.chat.store import ChatStore, open_store
from services.chat.wire import (
    attachment_proto,
    joined,
    member_proto,
    message_proto,
    rejected,
    room_proto,
    seed_count,
    seed_message,
    upload_of,
)
from services.kit import paging
from services.kit.auth import SessionResolver, require_caller, signed_in_caller, token_rejected
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import DomainError, InvalidArgument, NotFound, OutOfRange, Unauthenticated
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec

SEED_ANONYMOUS = "Anonymous"  # the chat seed's name for a member who gave none
FIRST_FRAME_WAIT = 60.0  # seconds a Chat stream may stay open without saying which room it joins
OUTGOING = 64  # frames queued per Chat stream between the room feed and the client


@dataclass(frozen=True)
class _Failure:
    error: BaseException


def _author(username: str) -> Author:
    who = signed_in_caller()
    if who is None and token_rejected():
        # A token that did not resolve: the client thinks it is signed in; don't post under a guess.
        raise Unauthenticated("the session is unknown, expired or revoked: sign in again, or send no token")
    return domain.author_for((who.user_id, who.username) if who else None, username)


def seed_limit(text: str, default: int = 50, cap: int = 500) -> int:
    """The seed's `limit`: a positive integer, else its default (as Go's strconv.Atoi check); capped."""
    value = int(text) if text.strip().lstrip("+").isdigit() else 0
    return min(value, cap) if value > 0 else default


def _room_of(room_id: str) -> str:
    return domain.check_room_id(domain.room_id_or_default(room_id))


class ChatServicer(chat_pb2_grpc.ChatServiceServicer):
    """`wake` tells the outbox relay an entry was written; `replica` names this process's connections."""

    def __init__(self, store: ChatStore, feed: RoomFeed, wake: Callable[[], None], replica: str) -> None:
        self.store, self.feed, self.wake, self.replica = store, feed, wake, replica
        self._leaving: set[asyncio.Task] = set()

    # -- rooms

    async def CreateRoom(self, request, context):
        who = require_caller()
        room_id, title, description = domain.check_new_room(request.room_id, request.title,
                                                            request.description)
        room = await self.store.create_room(room_id, title, description, who.user_id, time.time())
        return chat_pb2.CreateRoomResponse(room=room_proto(room))

    async def ListRooms(self, request, context):
        size = domain.page_size(request.page_size, "page_size")
        offset = paging.decode_token(request.page_token, "rooms", kind=paging.offset) or 0
        rooms = await self.store.list_rooms(size + 1, offset)
        more = len(rooms) > size
        return chat_pb2.ListRoomsResponse(
            rooms=[room_proto(r) for r in rooms[:size]],
            next_page_token=paging.encode_token(offset + size, "rooms") if more else "",
        )

    async def GetRoom(self, request, context):
        room_id = _room_of(request.room_id)
        room = await self.store.get_room(room_id)
        if room is None:
            raise NotFound.of("room", room_id)
        members = await self.store.members(room_id)
        return chat_pb2.GetRoomResponse(room=room_proto(room), members=[member_proto(m) for m in members])

    # -- messages

    async def History(self, request, context):
        room_id = _room_of(request.room_id)
        size = domain.page_size(request.limit, "limit")
        before = paging.decode_token(request.page_token, "history", room_id, kind=paging.offset)
        if await self.store.last_sequence(room_id) is None:
            raise NotFound.of("room", room_id)
        entries = await self.store.history(room_id, size + 1, before)
        more = len(entries) > size
        entries = entries[:size]
        return chat_pb2.HistoryResponse(
            messages=[message_proto(e) for e in entries],
            next_page_token=paging.encode_token(entries[-1].sequence, "history", room_id) if more else "",
        )

    async def _post(self, draft: domain.Draft) -> chat_pb2.Message:
        entry, created = await self.store.append(draft, time.time())
        if created:
            self.wake()
            await self.feed.deliver(entry)
        return message_proto(entry)

    async def Send(self, request, context):
        room_id = _room_of(request.room_id)
        author = _author(request.username)
        draft = domain.check_draft(room_id, author, request.text, upload_of(request),
                                   request.client_message_id)
        return chat_pb2.SendResponse(message=await self._post(draft))

    async def GetAttachment(self, request, context):
        room_id = _room_of(request.room_id)
        found = await self.store.attachment(room_id, request.attachment_id)
        if found is None:
            raise NotFound.of("attachment", request.attachment_id)
        info, data = found
        return chat_pb2.GetAttachmentResponse(attachment=attachment_proto(info, data))

    # -- streams

    async def _start(self, room_id: str, resume_from: int) -> int:
        """Where a stream starts: resume_from, or the live tail; NotFound / OUT_OF_RANGE."""
        live = await self.feed.ensure(room_id)
        if resume_from == 0:
            return live
        last = await self.store.last_sequence(room_id)
        if last is None:
            raise NotFound.of("room", room_id)
        if resume_from > last:
            raise OutOfRange(
                f"resume_from {resume_from} is beyond room {room_id!r}'s latest sequence {last}; "
                "resume from a sequence you received, or 0 for live only"
            )
        return resume_from

    async def WatchRoom(self, request, context):
        room_id = _room_of(request.room_id)
        after = await self._start(room_id, request.resume_from)
        # Headers now: every entry after `after` reaches this stream, so a watcher told "open" (the
        # bridge opens a WebSocket on these headers) and then reading the room misses no join.
        await context.send_initial_metadata(())
        async for message in self.feed.subscribe(room_id, after):
            yield chat_pb2.WatchRoomResponse(sequence=message.sequence, message=message)

    async def Chat(self, request_iterator, context):
        frames = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(frames.__anext__(), FIRST_FRAME_WAIT)
        except StopAsyncIteration:
            raise InvalidArgument.field(
                "room_id", "the stream ended before its first frame: send one to join") from None
        except asyncio.TimeoutError:
            raise InvalidArgument.field(
                "room_id",
                f"no first frame within {FIRST_FRAME_WAIT:.0f}s: send one to join a room") from None
        room_id = _room_of(first.room_id)
        author = _author(first.username)
        after = await self._start(room_id, first.resume_from)
        updates = self.feed.subscribe(room_id, after)  # created before the JOIN: it sees our own join
        connection_id = domain.new_id()
        join = await self.store.connect(room_id, author, connection_id, self.replica, time.time())
        timed_out = False
        outgoing: asyncio.Queue = asyncio.Queue(OUTGOING)
        tasks: list[asyncio.Task] = []
        try:
            if join is not None:
                self.wake()
                await self.feed.deliver(join)
            room = await self.store.get_room(room_id)
            members = await self.store.members(room_id)
            you = next((m for m in members
                        if (m.user_id, m.username) == (author.user_id, author.username)), None)
            yield chat_pb2.ChatResponse(sequence=after, joined=joined(room, members, you))
            tasks.append(asyncio.ensure_future(self._pump(updates, outgoing)))
            tasks.append(asyncio.ensure_future(self._read(first, frames, room_id, author, outgoing)))
            delivered = after
            while True:
                item = await outgoing.get()
                if isinstance(item, _Failure):
                    raise item.error
                if isinstance(item, chat_pb2.Rejected):
                    yield chat_pb2.ChatResponse(sequence=delivered, rejected=item)
                else:
                    delivered = item.sequence
                    yield chat_pb2.ChatResponse(sequence=item.sequence, message=item)
        except DomainError as exc:
            timed_out = exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            raise
        finally:
            for task in tasks:
                task.cancel()
            leave = asyncio.ensure_future(self._leave(connection_id, timed_out))
            self._leaving.add(leave)
            leave.add_done_callback(self._leaving.discard)

    async def _pump(self, updates: AsyncIterator[chat_pb2.Message], outgoing: asyncio.Queue) -> None:
        """Room entries into the stream's small queue; a client that stops reading stalls this pump,
        the room's log moves on without it, and the log ends it with RESOURCE_EXHAUSTED."""
        try:
            async for message in updates:
                await outgoing.put(message)
        except Exception as exc:  # noqa: BLE001 - ends the stream with this error's status
            await outgoing.put(_Failure(exc))

    async def _read(self, first, frames, room_id: str, author: Author, outgoing: asyncio.Queue) -> None:
        """Each frame with text or an attachment is a message; a refused one gets a `rejected` reply."""
        frame = first
        try:
            while True:
                if frame is not first and frame.room_id and frame.room_id != room_id:
                    raise InvalidArgument.field(
                        "room_id",
                        f"this stream joined {room_id!r}; open another stream for {frame.room_id!r}")
                upload = upload_of(frame)
                if domain.has_content(frame.text, upload) or len(frame.text) > 0:
                    try:
                        draft = domain.check_draft(room_id, author, frame.text, upload,
                                                   frame.client_message_id)
                        await self._post(draft)
                    except (InvalidArgument, NotFound) as exc:
                        await outgoing.put(rejected(frame, exc))
                try:
                    frame = await frames.__anext__()
                except StopAsyncIteration:
                    return  # the client is done sending; it keeps receiving
        except Exception as exc:  # noqa: BLE001 - ends the stream with this error's status
            await outgoing.put(_Failure(exc))

    async def _leave(self, connection_id: str, timed_out: bool) -> None:
        leave = await self.store.disconnect(connection_id, timed_out, time.time())
        if leave is not None:
            self.wake()
            await self.feed.deliver(leave)

    # -- the chat seed's own routes, on the default room

    async def SeedHistory(self, request, context):
        size = seed_limit(request.limit)
        entries = await self.store.history(domain.DEFAULT_ROOM, size, None)
        return chat_pb2.SeedHistoryResponse(
            messages=[seed_message(message_proto(e)) for e in reversed(entries)])

    async def SeedChat(self, request_iterator, context):
        frames = request_iterator.__aiter__()

        async def as_chat_frames():
            first = True
            async for frame in frames:
                if first:
                    first = False
                    yield chat_pb2.ChatRequest(room_id=domain.DEFAULT_ROOM,
                                               username=frame.username or SEED_ANONYMOUS, text=frame.content)
                else:
                    yield chat_pb2.ChatRequest(text=frame.content)  # empty: a keep-alive, nothing posted

        online, counted_upto = 0, 0
        async for response in self.Chat(as_chat_frames(), context):
            kind = response.WhichOneof("frame")
            if kind == "joined":
                # The member list already counts every entry up to the room's last sequence.
                online, counted_upto = len(response.joined.members), response.joined.room.last_sequence
            elif kind == "message":
                message = response.message
                is_presence = message.kind in (chat_pb2.MESSAGE_KIND_JOIN, chat_pb2.MESSAGE_KIND_LEAVE)
                if is_presence and message.sequence > counted_upto:
                    online += 1 if message.kind == chat_pb2.MESSAGE_KIND_JOIN else -1
                yield chat_pb2.SeedChatResponse(frame=seed_message(message, online))
                if is_presence:
                    yield chat_pb2.SeedChatResponse(frame=seed_count(online))
            # A refused frame (too long, say) has no form in the seed's protocol: it is not posted.

    async def drain(self) -> None:
        """Wait for the leaves of streams that just ended (shutdown)."""
        if self._leaving:
            await asyncio.wait(set(self._leaving), timeout=5.0)


async def build(runtime, *, store: ChatStore | None = None, sessions: SessionResolver | None = None,
                feed_capacity: int = 1024, presence_interval: float = 10.0,
                stale_after: float = 45.0) -> ServiceSpec:
    """The chat domain for the launcher; tests pass their own store, sessions or limits.
    On stop, after the drain, the servicer first waits for the leaves of the streams that just ended
    (on_stop), then the fan-out, presence and the relay stop: unsent rows stay in the outbox for the
    next start (or another replica)."""
    store = store or open_store(runtime.settings)
    bus = await runtime.bus()
    replica = replica_name()
    feed = RoomFeed(store, capacity=feed_capacity)
    relay = outbox_relay(bus, store)
    presence = PresenceKeeper(store, feed, relay.wake, replica, interval=presence_interval,
                              stale_after=stale_after)
    servicer = ChatServicer(store, feed, relay.wake, replica)
    return ServiceSpec(
        domain=DOMAINS["chat"],
        register=lambda server: chat_pb2_grpc.add_ChatServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store], relay=relay, workers=[presence], consumers=[RoomFanout(feed, replica)], bus=bus,
        on_stop=[servicer.drain],
        sessions=sessions if sessions is not None else runtime.sessions(),
    )
