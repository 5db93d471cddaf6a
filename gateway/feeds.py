"""Shared feeds: many subscribers of one server stream served from one upstream call per bridge process.

A method whose proto declares `(agora.api.v1.feed)` is not called once per subscriber. Identical
subscriptions (the same binding, the same request without its `resume_from`, and, for
STREAM_SHARING_PER_CALLER, the same caller credentials) attach to one `Feed`, which holds the
upstream call and hands every message to its subscribers:

- **Encode once.** A message becomes its JSON once, and its SSE, NDJSON and WebSocket frames once
  each (`Entry.frame`); every subscriber is handed the same bytes. Handing over is synchronous:
  the feed never awaits a subscriber. To a connection that keeps up, the frame's wire bytes (built
  once too: `Entry.wire`) are written straight to its transport (direct.py); otherwise the frame
  is queued and the subscriber's own writer task sends what has queued up through ASGI, in one
  write when several frames wait, until it keeps up again.
- **Catch-up at the edge.** A log feed keeps a bounded ring of recent sequenced messages. A
  subscriber that resumes inside it is served from it; an older one (or one ahead of the feed) gets
  its own upstream call with `resume_from`, as without feeds, and is handed over to the shared feed
  as soon as the ring holds everything after what it has been sent. A newcomer of a snapshot feed,
  or of a log feed whose calls start with a snapshot (`snapshot_field`), gets the latest at once.
- **Slow subscribers never hold the feed.** A snapshot subscriber keeps at most one frame waiting:
  a newer snapshot replaces it. A log subscriber has a byte budget; past it, it is closed with
  RESOURCE_EXHAUSTED and the last sequence it was sent (SSE `event: error`, NDJSON `{"error"}`,
  WebSocket close 4008), so it can resume without a gap.
- **Rights.** A shared upstream call carries no caller credentials (only ACCESS_PUBLIC methods may
  be shared by all); a feed's `admit` method, called with the subscriber's own credentials, is the
  per-subscriber check before it is attached. A per-caller feed's call carries the caller's
  credentials, so a session that ends ends the feed and every one of its subscribers.

The last subscriber leaving cancels the upstream call after `linger` seconds (a reconnecting
subscriber finds the ring still there). An upstream that ends ends the feed: its subscribers get the
end (OK, or the status) and the next subscriber opens a new feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import auth, direct
from gateway.codec import Codec, dump_json
from gateway.errors import BridgeError
from gateway.profiles import LOG, PER_CALLER, SEQUENCE_FIELD, SNAPSHOT, FeedSpec
from gateway.routes import Binding
from gateway.streaming import (
    FIRST_MESSAGE_WINDOW,
    frame_payload,
    send_error_response,
    status_of,
    wait_disconnect,
)
from services.kit.auth import EDGE_ADDRESS
from services.kit.telemetry import metrics

log = logging.getLogger("agora.gateway.feeds")

SSE, NDJSON, WEBSOCKET = "sse", "ndjson", "ws"
DEFAULT_BUDGET = 1 << 20  # bytes a log subscriber may have waiting before it is closed resumably
DEFAULT_LINGER = 2.0  # seconds a feed outlives its last subscriber
# Seconds a subscriber closed for falling behind gets to read what its writer is sending and the
# closing frame; a client that reads nothing for that long is cut without it (it resumes from the
# last id it got). Memory is bounded meanwhile: what waited was dropped at the close.
OVERFLOW_GRACE = 30.0
KEEPALIVE = b": keepalive\n\n"
RESUME_FIELD = "resume_from"
# Caller metadata that names who calls: a per-caller feed's key, and what a shared call leaves out.
_BRIDGE_KEYS = frozenset({"x-request-id", "x-forwarded-for", EDGE_ADDRESS, "traceparent", "tracestate",
                          "baggage"})
_LIVE: weakref.WeakSet[Feeds] = weakref.WeakSet()  # every bridge's feeds in this process, for /metrics


class Entry:
    """One upstream message and its frames, each encoded once, when first asked for."""

    __slots__ = ("message", "sequence", "_json", "_frames", "_wire", "_binding", "_codec")

    def __init__(self, binding: Binding, codec: Codec, message: Message, sequence: int | None):
        self.message = message
        self.sequence = sequence
        self._binding = binding
        self._codec = codec
        self._json: bytes | None = None
        self._frames: dict[str, Any] = {}
        self._wire: dict[str, bytes] = {}

    def frame(self, fmt: str) -> Any:
        frame = self._frames.get(fmt)
        if frame is None:
            if self._json is None:
                self._json = dump_json(frame_payload(self._binding, self._codec, self.message))
            frame = self._frames[fmt] = encode(fmt, self._json, self.sequence)
        return frame

    def wire(self, fmt: str, kind: str) -> bytes:
        """The frame in `fmt` as the wire carries it (direct.py), built once for every connection."""
        key = fmt + kind
        wired = self._wire.get(key)
        if wired is None:
            frame = self.frame(fmt)
            wired = self._wire[key] = direct.wire(kind, frame.encode() if isinstance(frame, str) else frame)
        return wired


def encode(fmt: str, data: bytes, sequence: int | None) -> Any:
    """A frame in `fmt`: bytes for SSE and NDJSON, the text of a WebSocket text frame."""
    if fmt == WEBSOCKET:
        return data.decode()
    if fmt == NDJSON:
        return b'{"result":' + data + b"}\n"
    if sequence is not None:
        return b"id: " + str(sequence).encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


def error_frame(fmt: str, status: dict[str, Any]) -> bytes:
    if fmt == SSE:
        return b"event: error\ndata: " + dump_json(status) + b"\n\n"
    if fmt == NDJSON:
        return dump_json({"error": status}) + b"\n"
    return b""  # a WebSocket ends with a close frame instead


class Subscriber:
    """One viewer: the frames waiting for its writer, its position in the log, and how it ended."""

    def __init__(self, fmt: str, kind: int, budget: int, after: int | None):
        self.fmt = fmt
        self.kind = kind
        self.budget = budget
        # frames: bytes (SSE, NDJSON) or str (WebSocket text); lists, not deques: they are only
        # appended to and taken whole, and an empty list is 56 bytes where a deque is 760 (10,000
        # idle subscribers hold two each)
        self.pending: list[Any] = []
        self.pending_bytes = 0
        self.wake = asyncio.Event()
        self.last = after  # the last sequence handed to this subscriber (None: none yet)
        self.sent_sequence = after  # the last sequence its writer has written out
        self.overflowed = False  # closed for falling behind (its status names sent_sequence)
        self._pending_sequences: list[int | None] = []
        self.ended = False
        self.status: dict[str, Any] | None = None  # how it ended, when not OK
        self.error: BaseException | None = None  # the exception behind `status`, when there is one
        self.idle = True  # nothing written since the last keepalive tick
        self.taken = False  # its writer has taken a frame
        self.on_overflow: Callable[[], None] | None = None  # its writer's deadline to take the close
        # Its connection's transport, written to directly while it keeps up (direct.py); None: ASGI.
        self.sink: direct.WebSocketSink | direct.HttpChunkSink | None = None
        self.writing = False  # its writer is sending frames it took: nothing may overtake them

    def offer(self, entry: Entry) -> bool:
        """Write `entry` to the connection, or queue it for the writer (synchronous: the feed's hot
        path). True when it went straight to the connection."""
        if self.ended:
            return False
        seq = entry.sequence
        if seq is not None and self.last is not None and seq <= self.last and self.kind == LOG:
            return False  # already handed over (ring and live overlap at a hand-over)
        sink = self.sink
        if sink is not None and not self.pending and not self.writing and sink.writable():
            # The hot path: the same bytes for every subscriber, written now, no task woken.
            sink.write(entry.wire(self.fmt, sink.kind))
            if seq is not None:
                self.last = self.sent_sequence = seq
            self.idle = False
            return True
        frame = entry.frame(self.fmt)
        if self.kind == SNAPSHOT and self.pending:
            # Latest wins: the snapshot its writer has not taken yet is replaced.
            self.pending.clear()
            self._pending_sequences.clear()
            self.pending_bytes = 0
        elif self.kind == LOG and self.pending_bytes + len(frame) > self.budget:
            self.fall_behind()
            return False
        self.pending.append(frame)
        self._pending_sequences.append(seq)
        self.pending_bytes += len(frame)
        if seq is not None:
            self.last = seq
        self.wake.set()
        return False

    def push_raw(self, frame: bytes) -> None:
        if not self.ended and not self.pending:
            self.pending.append(frame)
            self._pending_sequences.append(None)
            self.pending_bytes += len(frame)
            self.wake.set()

    def fall_behind(self) -> None:
        """Over its byte budget: what waits is dropped and it ends, resumable after what it was sent."""
        self.pending.clear()
        self._pending_sequences.clear()
        self.pending_bytes = 0
        self.overflowed = True
        self.end(self.overflow_status())
        metrics.edge_feed_overflows.inc()
        if self.on_overflow is not None:
            self.on_overflow()

    def overflow_status(self) -> dict[str, Any]:
        resume = self.sent_sequence or 0
        return {"code": code_pb2.RESOURCE_EXHAUSTED, "details": [],
                "message": f"fell behind the stream: resume from sequence {resume} "
                           f"({RESUME_FIELD}={resume}, or SSE Last-Event-ID: {resume})"}

    def end(self, status: dict[str, Any] | None, error: BaseException | None = None) -> None:
        if not self.ended:
            self.ended = True
            self.status = status
            self.error = error
            self.wake.set()

    def take(self) -> tuple[list[Any], int | None]:
        """What waits, in order, and the last sequence among it (None: none): the writer marks it
        written with `written` once its transport took the frames."""
        frames, self.pending = self.pending, []
        last = next((seq for seq in reversed(self._pending_sequences) if seq is not None), None)
        self._pending_sequences.clear()
        self.pending_bytes = 0
        self.idle = False
        self.taken = True
        return frames, last

    def written(self, sequence: int | None) -> None:
        if sequence is not None:
            self.sent_sequence = sequence
        if self.overflowed:  # the resume point it is told is the last frame it was really sent
            self.status = self.overflow_status()


    async def frames(self, deadline: float | None = None):
        """The frames queued for its writer, in batches as they queue up (while nothing waits,
        frames go straight to the connection instead); returns at its end, and `status` says how
        it ended (None: OK)."""
        sub = self
        while True:
            if sub.pending:
                frames, last = sub.take()
                sub.writing = True
                try:
                    yield frames  # the consumer resumes this generator once it has written them
                finally:
                    sub.writing = False
                sub.written(last)
                continue
            if sub.ended:
                return
            sub.wake.clear()
            if deadline is None:
                await sub.wake.wait()
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    sub.end({"code": code_pb2.DEADLINE_EXCEEDED, "message": "Deadline Exceeded",
                             "details": []})
                    continue
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sub.wake.wait(), left)


class Feed:
    """One upstream call and the subscribers it serves."""

    def __init__(self, feeds: Feeds, key: tuple, binding: Binding, request: Message,
                 metadata: list[tuple[str, Any]]):
        self.feeds = feeds
        self.key = key
        self.binding = binding
        self.spec: FeedSpec = binding.feed
        self.request = request
        self.metadata = metadata
        self.subscribers: set[Subscriber] = set()
        self.ring: deque[Entry] = deque(maxlen=self.spec.ring)
        self.latest: Entry | None = None  # snapshot feeds: the newest; log feeds: the snapshot head
        # The ring holds every message after this sequence (a log replayed from its start: all of it).
        self.floor: int | None = 0 if self.spec.replays_history else None
        self.newest: int | None = None
        self.ended = False
        self.end_status: dict[str, Any] | None = None  # the status body it ended with (None: OK)
        self.end_error: BaseException | None = None  # the exception behind it, for an HTTP answer
        self.headers: list[tuple[bytes, bytes]] | None = None  # the upstream's response headers
        self.answered = asyncio.Event()  # set when the upstream's headers come, or it ends
        self.started = asyncio.Event()  # set at the first message, or the end
        self._idle_since: float | None = None
        self._seq_field = binding.method.output_type.fields_by_name.get(SEQUENCE_FIELD)
        self._task = asyncio.ensure_future(self._run())

    def _sequence(self, message: Message) -> int | None:
        return int(getattr(message, self._seq_field.name)) if self._seq_field is not None else None

    async def _run(self) -> None:
        call = self.feeds.upstreams.callable(self.binding)(self.request, metadata=self.metadata)
        metrics.edge_feed_upstreams("shared").inc()
        try:
            with contextlib.suppress(grpc.aio.AioRpcError):
                self.headers = auth.response_headers(await call.initial_metadata())
            self.answered.set()
            async for message in call:
                self.publish(message)
            self.finish(None)
        except asyncio.CancelledError:
            call.cancel()
            self.finish(BridgeError(code_pb2.UNAVAILABLE, "the bridge is shutting down; reconnect"))
            raise
        except grpc.aio.AioRpcError as exc:
            self.finish(exc)
        except Exception:  # noqa: BLE001 - a bug of ours must end the feed, not leave it hanging
            log.exception("feed %s failed", self.binding.method.full_name)
            self.finish(BridgeError(code_pb2.INTERNAL, "stream failed"))

    def publish(self, message: Message) -> None:
        entry = Entry(self.binding, self.feeds.codec, message, self._sequence(message))
        self.started.set()
        if self.spec.kind == SNAPSHOT:
            self.latest = entry
        else:
            seq = entry.sequence
            first = self.newest is None
            if first and self.spec.snapshot_field and message.HasField(self.spec.snapshot_field):
                self.latest = entry  # the head a newcomer starts from
                self.floor = seq
            else:
                if first and self.floor is None:
                    self.floor = seq - 1 if seq else 0
                if len(self.ring) == self.ring.maxlen:
                    dropped = self.ring[0].sequence
                    self.floor = dropped
                    if self.latest is not None:
                        self.latest = None  # the head's successors are no longer all here
                self.ring.append(entry)
            self.newest = seq if seq is not None else self.newest
        offered, direct_writes = len(self.subscribers), 0
        for subscriber in list(self.subscribers):
            direct_writes += subscriber.offer(entry)
            if subscriber.ended:
                self.subscribers.discard(subscriber)
        if direct_writes:
            metrics.edge_feed_deliveries("direct").inc(direct_writes)
        if offered > direct_writes:
            metrics.edge_feed_deliveries("queued").inc(offered - direct_writes)

    def finish(self, error: BaseException | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.end_error = error
        status = self.end_status = None if error is None else status_of(error, self.feeds.codec.pool)
        self.answered.set()
        self.started.set()
        self.feeds.forget(self)
        for subscriber in self.subscribers:
            subscriber.end(status, error)
        self.subscribers.clear()

    def covers(self, after: int) -> bool:
        """True when the ring holds every message after sequence `after` that the stream will send."""
        if self.floor is None or after < self.floor:
            return False
        return after == self.floor if self.newest is None else after <= self.newest

    def attach(self, subscriber: Subscriber, after: int | None) -> bool:
        """Attach `subscriber` (synchronously, so nothing is published in between), served from the
        ring first; False when it must catch up on its own upstream call first."""
        if self.ended:
            return False
        if self.spec.kind == SNAPSHOT:
            if self.latest is not None:
                subscriber.offer(self.latest)
        elif after is None:
            if self.spec.snapshot_field:
                if self.latest is not None and self.floor == self.latest.sequence:
                    subscriber.offer(self.latest)
                    for entry in self.ring:
                        subscriber.offer(entry)
                elif self.newest is not None:
                    return False  # the head's successors left the ring: a snapshot of its own
            # else: live only, from here on
        elif self.covers(after):
            subscriber.last = after
            for entry in self.ring:
                if entry.sequence is not None and entry.sequence > after:
                    subscriber.offer(entry)
        else:
            return False
        self.subscribers.add(subscriber)
        self._idle_since = None
        return True

    def detach(self, subscriber: Subscriber) -> None:
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
        if not self.subscribers and not self.ended:
            self._idle_since = time.monotonic()

    def idle_for(self, now: float) -> float:
        return now - self._idle_since if self._idle_since is not None else 0.0

    def cancel(self) -> None:
        self._task.cancel()


class Feeds:
    """The bridge's feeds by key, the keepalive ticker, and the subscribe entry both transports use."""

    def __init__(self, codec: Codec, upstreams, message_class: Callable[[Any], type[Message]], *,
                 budget: int = DEFAULT_BUDGET, linger: float = DEFAULT_LINGER, heartbeat: float = 15.0):
        self.codec = codec
        self.upstreams = upstreams
        self.message_class = message_class
        self.budget = budget
        self.linger = linger
        self.heartbeat = heartbeat
        self.feeds: dict[tuple, Feed] = {}
        self._ticker: asyncio.Task | None = None
        _LIVE.add(self)

    def __len__(self) -> int:
        return len(self.feeds)

    def forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]

    def feed_for(self, binding: Binding, request: Message, metadata: Iterable[tuple[str, Any]]) -> Feed:
        shared = self.shared_request(binding, request)
        # A per-caller feed is keyed (and called) by everything the caller sent that the upstream
        # reads (credentials, Grpc-Metadata-*), not by what the bridge adds per request.
        caller = [(k, v) for k, v in metadata if k not in _BRIDGE_KEYS] \
            if binding.feed.sharing == PER_CALLER else []
        scope = tuple(sorted((k, v if isinstance(v, str) else v.hex()) for k, v in caller))
        key = (binding.operation_id, shared.SerializeToString(deterministic=True), scope)
        feed = self.feeds.get(key)
        if feed is None or feed.ended:
            feed = self.feeds[key] = Feed(self, key, binding, shared, caller)
            self._ensure_ticker()
        return feed

    @staticmethod
    def shared_request(binding: Binding, request: Message) -> Message:
        shared = binding.request_class()
        shared.CopyFrom(request)
        if RESUME_FIELD in binding.method.input_type.fields_by_name:
            shared.ClearField(RESUME_FIELD)
        return shared

    @staticmethod
    def resume_point(binding: Binding, request: Message) -> int | None:
        if RESUME_FIELD not in binding.method.input_type.fields_by_name:
            return None
        value = getattr(request, RESUME_FIELD)
        return int(value) if value else None

    async def admit(self, binding: Binding, request: Message, metadata) -> None:
        """The feed's per-subscriber check, with the subscriber's own credentials; raises its refusal."""
        name = binding.feed.admit
        if not name:
            return
        method = binding.method.containing_service.methods_by_name[name.rsplit(".", 1)[-1]]
        fn, request_class = self.upstreams.unary(binding.service, method, self.message_class)
        check = request_class()
        for field in check.DESCRIPTOR.fields:
            source = request.DESCRIPTOR.fields_by_name.get(field.name)
            if source is None or source.type != field.type or field.is_repeated or field.message_type:
                continue
            setattr(check, field.name, getattr(request, field.name))
        await fn(check, metadata=metadata, timeout=10.0)

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        """Keepalives for idle SSE subscribers (one timer for all), and idle feeds closed."""
        interval = min(self.heartbeat, max(self.linger, 0.05))
        last_keepalive = time.monotonic()
        while self.feeds:
            await asyncio.sleep(interval)
            now = time.monotonic()
            keepalive = now - last_keepalive >= self.heartbeat
            if keepalive:
                last_keepalive = now
            for feed in list(self.feeds.values()):
                if not feed.subscribers and feed.idle_for(now) >= self.linger:
                    feed.cancel()
                    self.forget(feed)
                    continue
                if keepalive:
                    for subscriber in feed.subscribers:
                        if subscriber.fmt == SSE and subscriber.idle:
                            subscriber.push_raw(KEEPALIVE)
                        subscriber.idle = True
            report_counts()
        report_counts()

    async def close(self) -> None:
        feeds = list(self.feeds.values())
        for feed in feeds:
            feed.cancel()
        for feed in feeds:
            with contextlib.suppress(BaseException):
                await feed._task
        if self._ticker is not None:
            self._ticker.cancel()
        self.feeds.clear()
        report_counts()


class Subscription:
    """A subscriber's life: admitted, attached (or caught up on its own call, then attached), detached."""

    def __init__(self, feeds: Feeds, binding: Binding, request: Message, metadata, fmt: str):
        self.feeds = feeds
        self.binding = binding
        self.request = request
        self.metadata = metadata
        spec = binding.feed
        self.after = Feeds.resume_point(binding, request)
        if self.after is None and spec.replays_history:
            self.after = 0  # "from the start" is a position like any other
        self.subscriber = Subscriber(fmt, spec.kind, feeds.budget, self.after)
        self.feed: Feed | None = None
        self._own: asyncio.Task | None = None
        self.headers: list[tuple[bytes, bytes]] = []

    async def open(self, window: float, *, until_headers: bool = False) -> BaseException | None:
        """Admit and attach, then wait up to `window` for the first frame (or, `until_headers`, for
        the upstream's headers). Returns the error of a stream refused or failed before anything
        was sent (the caller answers it in HTTP), else None."""
        try:
            await self.feeds.admit(self.binding, self.request, self.metadata)
        except grpc.aio.AioRpcError as exc:
            return exc
        feed = self.feeds.feed_for(self.binding, self.request, self.metadata)
        self.feed = feed
        sub = self.subscriber
        if not feed.attach(sub, self.after):
            self._own = asyncio.ensure_future(self._catch_up(feed))
        if not sub.pending and not sub.ended:
            waiters = [asyncio.ensure_future(sub.wake.wait()),
                       asyncio.ensure_future((feed.answered if until_headers else feed.started).wait())]
            try:
                await asyncio.wait(waiters, timeout=window, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        self.headers = feed.headers or []
        if sub.ended and not sub.pending and sub.error is not None and not sub.taken:
            return sub.error  # refused before a frame: an HTTP answer, not a stream
        return None

    async def _catch_up(self, feed: Feed) -> None:
        """Its own upstream call from where it is, until the feed's ring holds what follows."""
        request = self.binding.request_class()
        request.CopyFrom(self.request)
        if self.subscriber.last is not None and RESUME_FIELD in request.DESCRIPTOR.fields_by_name:
            setattr(request, RESUME_FIELD, self.subscriber.last)
        call = self.feeds.upstreams.callable(self.binding)(request, metadata=self.metadata)
        metrics.edge_feed_upstreams("catch_up").inc()
        sub = self.subscriber
        seq_field = self.binding.method.output_type.fields_by_name.get(SEQUENCE_FIELD)
        try:
            async for message in call:
                seq = int(getattr(message, seq_field.name)) if seq_field is not None else None
                sub.offer(Entry(self.binding, self.feeds.codec, message, seq))
                if sub.ended:
                    return
                if sub.last is not None and not feed.ended and feed.covers(sub.last) \
                        and feed.attach(sub, sub.last):
                    return  # handed over: the feed serves it from here
            sub.end(None)
        except grpc.aio.AioRpcError as exc:
            sub.end(status_of(exc, self.feeds.codec.pool), exc)
        finally:
            call.cancel()

    def close(self) -> None:
        if self._own is not None:
            self._own.cancel()
        if self.feed is not None:
            self.feed.detach(self.subscriber)
        self.subscriber.end(None)

    def watch_writer(self, writer: asyncio.Task) -> None:
        """A subscriber closed for falling behind gets OVERFLOW_GRACE to take its closing frame; a
        writer still stuck on a client that reads nothing is then cancelled, and its connection,
        when the bridge holds its transport, aborted: what waits in the transport's buffer is
        dropped at once, rather than kept until a client that may never read again does."""
        loop = asyncio.get_running_loop()

        def cut() -> None:
            if writer.done():
                return
            writer.cancel()
            if self.subscriber.sink is not None:
                self.subscriber.sink.abort()

        self.subscriber.on_overflow = lambda: loop.call_later(OVERFLOW_GRACE, cut)

    def frames(self, deadline: float | None = None):
        """The subscriber's queued frames, in batches (Subscriber.frames)."""
        return self.subscriber.frames(deadline)


async def serve_http(subscription: Subscription, scope: dict[str, Any], receive: Callable, send: Callable,
                     headers: list[tuple[bytes, bytes]], *, deadline: float | None) -> None:
    """A feed subscriber over a plain HTTP response (SSE or NDJSON), as streaming.HttpStream
    serves an unshared call: an error before the first frame is an HTTP answer; after it, the
    stream's last frame."""
    codec = subscription.feeds.codec
    error = await subscription.open(FIRST_MESSAGE_WINDOW)
    if error is not None:
        subscription.close()
        await send_error_response(send, error, codec, headers)
        return
    fmt = subscription.subscriber.fmt
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream" if fmt == SSE else b"application/x-ndjson"),
        (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"), *headers, *subscription.headers]})
    if fmt == SSE:
        await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
    subscription.subscriber.sink = direct.sink_of(scope)  # the response has started: chunks may go
    watcher = asyncio.ensure_future(wait_disconnect(receive))
    writer = asyncio.ensure_future(_write_http(subscription, send, fmt, deadline))
    subscription.watch_writer(writer)
    try:
        await asyncio.wait({watcher, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        subscription.close()
        for task in (watcher, writer):
            task.cancel()
        for task in (watcher, writer):
            with contextlib.suppress(BaseException):
                await task


async def _write_http(subscription: Subscription, send: Callable, fmt: str, deadline: float | None) -> None:
    async for frames in subscription.frames(deadline):
        body = frames[0] if len(frames) == 1 else b"".join(frames)
        await send({"type": "http.response.body", "body": body, "more_body": True})
    status = subscription.subscriber.status
    tail = error_frame(fmt, status) if status is not None else b""
    await send({"type": "http.response.body", "body": tail, "more_body": False})


def live_counts() -> tuple[int, int]:
    """(feeds, subscribers) over every bridge of this process: what /metrics reports."""
    feeds = [f for bridge in list(_LIVE) for f in bridge.feeds.values()]
    return len(feeds), sum(len(f.subscribers) for f in feeds)


def report_counts() -> None:
    """The feed gauges, set (each tick of a bridge's feed timer) from the live counts."""
    feeds, subscribers = live_counts()
    metrics.edge_feeds.set(feeds)
    metrics.edge_feed_subscribers.set(subscribers)

