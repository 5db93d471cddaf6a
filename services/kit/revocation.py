"""Sign-out reaches every process: on identity's `identity.session.revoked` event this process drops
the session from its session cache and ends every stream that was opened with it.

Identity writes the event in the transaction that revokes the session (its outbox), so it is never
lost. Each server process consumes it through a queue of its own (ephemeral, bound to that one
event: fan-out, every process sees every revocation, unlike a consumer group's shared work queue).
The kit's interceptor registers each stream whose caller is signed in (`OpenStreams.track`); a
revocation cancels those calls and the interceptor ends them with UNAUTHENTICATED
"session ended: signed out" (the bridge closes their WebSockets with 4016 and that reason, and ends
SSE with an `event: error`).

A client stream (bid, chat) is drained, not cut (`Drain`): it takes no frame after the event, the
frame it is working on finishes, and what that frame produced (the bid or message, through the feed)
is sent before the stream ends, so a socket is never closed on a write the server stored but the
client never saw accepted. The drain is bounded by `DRAIN_LIMIT`.

The bounds (RELIABILITY.md, "Sign-out"):
- streams: ended when the event is handled (plus the drain, at most `DRAIN_LIMIT`) \
(the outbox relay is woken by Logout; milliseconds on a
  healthy broker). Until then a stream keeps the caller it opened with.
- unary calls: refused once the event is handled (the cache entry is dropped), and in any case once
  the session cache's TTL (`CachedSessions.ttl`, 2 s) has passed, even with the broker down.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable

from agora.events.v1 import identity_pb2 as identity_events

from services.kit.auth import Caller
from services.kit.bus import EventBus, Subscription, unpack
from services.kit.bus.port import replica_group

log = logging.getLogger("agora.sessions")

SESSION_REVOKED = "identity.session.revoked"
ENDED = "session ended: signed out"


class OpenStreams:
    """The live streams of this process, by the session (token digest) they were opened with."""

    def __init__(self) -> None:
        self._by_session: dict[str, dict[object, Callable[[], None]]] = {}
        self._sessions_of: dict[str, set[str]] = {}  # user id -> digests with open streams

    def track(self, who: Caller, end: Callable[[], None]) -> Callable[[], None]:
        """Remember a stream of `who`; `end()` is called if its session is revoked. Returns the
        function that forgets it (call it when the stream ends, however it ends)."""
        if not who.user_id or not who.token_hash:
            return _nothing
        handle = object()
        self._by_session.setdefault(who.token_hash, {})[handle] = end
        self._sessions_of.setdefault(who.user_id, set()).add(who.token_hash)

        def untrack() -> None:
            streams = self._by_session.get(who.token_hash)
            if streams is None or streams.pop(handle, None) is None or streams:
                return
            del self._by_session[who.token_hash]
            digests = self._sessions_of.get(who.user_id)
            if digests is not None:
                digests.discard(who.token_hash)
                if not digests:
                    del self._sessions_of[who.user_id]

        return untrack

    def end(self, *, session_digest: str = "", user_id: str = "") -> int:
        """End the streams of one session (by digest) or, without one, of every session of the user."""
        digests = {session_digest} if session_digest else set(self._sessions_of.get(user_id, ()))
        ended = 0
        for digest in digests:
            for end in list(self._by_session.get(digest, {}).values()):
                end()
                ended += 1
        return ended

    def __len__(self) -> int:
        return sum(len(s) for s in self._by_session.values())


def _nothing() -> None:
    return None


# seconds a client stream may take, after the event, to finish its frame and send the results
DRAIN_LIMIT = 2.0
DRAIN_QUIET = 0.2  # a stream that sent nothing for this long after its last frame has sent its results


class Drain:
    """A client stream's requests, which sign-out can shut after the frame being worked on.

    `gate(requests)` is what the behaviour reads: once `shut()`, it reads no more (the behaviour sees
    the client stop sending; a frame that arrives later is dropped, never acted on). `sent()` is called
    for each response. `settled()` returns once the frame in hand is finished and the stream has been
    quiet for `DRAIN_QUIET` (or `DRAIN_LIMIT` has passed): then the stream can end."""

    def __init__(self) -> None:
        self._shut = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._sent = asyncio.Event()

    async def gate(self, requests: AsyncIterator) -> AsyncIterator:
        inner = requests.__aiter__()
        try:
            while True:
                self._idle.set()  # the behaviour asks for the next frame: the one before is finished
                if self._shut:
                    return
                try:
                    item = await inner.__anext__()
                except StopAsyncIteration:
                    return
                if self._shut:
                    return  # arrived after the session ended: not acted on
                self._idle.clear()
                yield item
        finally:
            self._idle.set()

    def sent(self) -> None:
        self._sent.set()

    def shut(self) -> None:
        self._shut = True

    async def settled(self) -> None:
        deadline = time.monotonic() + DRAIN_LIMIT
        try:
            await asyncio.wait_for(self._idle.wait(), DRAIN_LIMIT)
        except asyncio.TimeoutError:
            return
        while (left := deadline - time.monotonic()) > 0:
            self._sent.clear()
            try:
                await asyncio.wait_for(self._sent.wait(), min(DRAIN_QUIET, left))
            except asyncio.TimeoutError:
                return


class RevocationListener:
    """This process's one consumer of `identity.session.revoked` (see the module's docstring)."""

    def __init__(self, bus: EventBus, streams: OpenStreams, caches: Callable[[], Iterable]) -> None:
        self.bus, self.streams, self.caches = bus, streams, caches
        # unique per process and per listener (tests run several meshes in one process)
        self.group = f"{replica_group('kit.sessions.revoked')}-{uuid.uuid4().hex[:6]}"
        self._subscription: Subscription | None = None
        self.handled = 0

    async def handle(self, envelope) -> None:
        event = unpack(envelope, identity_events.SessionRevoked)
        digest = "" if event.all_sessions else event.session_digest
        if not digest and not event.user_id:
            return
        for cache in self.caches():
            cache.forget_session(session_digest=digest, user_id=event.user_id)
        ended = self.streams.end(session_digest=digest, user_id=event.user_id)
        self.handled += 1
        log.info("session revoked", extra={"user_id": event.user_id, "all_sessions": event.all_sessions,
                                           "streams_ended": ended})

    async def start(self) -> None:
        if self._subscription is None:
            self._subscription = await self.bus.subscribe(self.group, [SESSION_REVOKED], self.handle,
                                                          prefetch=64, ephemeral=True)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
