"""WebSockets: the upgrade (route, metadata, origin check) and the gRPC stream over it, JSON text frames.

A server stream takes its request from the URL; a bidi stream's request frames follow the URL's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import direct, errors, telemetry
from gateway.codec import Codec, dump_json
from gateway.errors import BridgeError
from gateway.feeds import WEBSOCKET, Feeds, Subscription
from gateway.limits import FrameBudget, FrameLimits
from gateway.metadata import Metadata, OutgoingMetadata
from gateway.routes import Binding, RouteTable
from gateway.streaming import FIRST_MESSAGE_WINDOW, call_error, frame_payload, status_of
from gateway.upstreams import Upstreams

_CLOSE_REASON_BYTES = 123  # RFC 6455 limit for a close frame's reason


class WebSocketCalls:
    """The bridge's WebSocket entry: one upgrade, one streaming call."""

    def __init__(self, table: RouteTable, codec: Codec, upstreams: Upstreams, metadata: OutgoingMetadata, *,
                 cors_origins: Collection[str], frame_limits: FrameLimits, feeds: Feeds | None = None):
        self.table = table
        self.feeds = feeds
        self.codec = codec
        self.upstreams = upstreams
        self.metadata = metadata
        self.cors_origins = set(cors_origins)
        self.frame_limits = frame_limits

    async def __call__(self, ws: WebSocket) -> None:
        path = ws.scope.get("raw_path", b"").decode("latin-1").partition("?")[0] or ws.scope["path"]
        binding = None
        try:
            binding, path_values = self.table.resolve("GET", path)
            ws.scope[telemetry.BINDING_KEY] = binding
            if not binding.server_streaming and not binding.client_streaming:
                raise BridgeError(code_pb2.UNIMPLEMENTED, f"{binding.method.full_name} is unary: use HTTP")
            metadata = self.metadata.build(ws.scope, "GET", websocket=True)
            check_origin(ws, metadata, self.cors_origins)
            self.metadata.check_size(metadata)
            items = parse_qsl(ws.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            base = binding.base_request(self.codec, path_values, items, None)
            call_fn = self.upstreams.callable(binding)
        except BridgeError as exc:
            profile = binding.profile if binding is not None else None
            if profile is not None and profile.upgrade_after_headers:
                await deny_upgrade(ws, exc.http, exc.body(), profile)
                return
            await ws.accept()
            await ws.close(code=errors.WEBSOCKET_CLOSE_BASE + exc.code, reason=close_reason(exc.message))
            return
        if binding.feed is not None and self.feeds is not None and not binding.client_streaming:
            subscription = Subscription(self.feeds, binding, base, metadata, WEBSOCKET)
            await websocket_feed(ws, subscription, limits=self.frame_limits)
            return
        await websocket_stream(ws, binding, self.codec, base, lambda req: call_fn(req, metadata=metadata),
                               limits=self.frame_limits)


def check_origin(ws: WebSocket, metadata: Metadata, cors_origins: Collection[str]) -> None:
    """Cookie-authenticated WebSockets only from our own origin or a configured CORS origin."""
    origin = ws.headers.get("origin")
    if not origin or "authorization" in ws.headers:
        return
    if not any(k == "authorization" for k, _ in metadata):
        return
    if "*" in cors_origins or origin in cors_origins:
        return
    if urlsplit(origin).netloc == ws.headers.get("host"):
        return
    raise BridgeError(code_pb2.PERMISSION_DENIED, "cross-origin WebSocket with a session cookie")


def fill_unset(frame: Message, base: Message) -> None:
    """Copy into an inbound frame every field path/query set that the frame itself left unset."""
    present = {f.name for f, _ in frame.ListFields()}
    for f, value in base.ListFields():
        if f.name in present:
            continue
        if f.is_repeated:
            getattr(frame, f.name).MergeFrom(value)
        elif f.message_type is not None:
            getattr(frame, f.name).CopyFrom(value)
        else:
            setattr(frame, f.name, value)


async def websocket_stream(
    ws: WebSocket,
    binding: Binding,
    codec: Codec,
    base_request: Message,
    start_call: Callable[[Any], Any],
    *,
    limits: FrameLimits | None = None,
) -> None:
    """Server stream or bidi stream over an accepted WebSocket; JSON text frames both ways.

    Every inbound frame is checked against `limits` (size, rate): over either, the socket closes with
    1009 / 1008 and a reason. A frame that is not valid JSON for the request closes it with 4003.
    """
    budget = FrameBudget(limits or FrameLimits())
    if binding.client_streaming:
        queue: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=1)  # bounded: one frame ahead

        async def requests():
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item

        def end_requests() -> None:
            # grpc's task that reads `requests()` is cancelled only if the call is still running; one
            # the server already ended would leave it waiting on the queue for ever ("Task was
            # destroyed but it is pending!"). The sentinel ends it either way.
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

        call = start_call(requests())
        # The URL is the first frame: a seed client that connects to
        # /api/v1/products/ws/subscribe/{id} or /ws?username=NAME and only listens has joined.
        first = binding.request_class()
        first.CopyFrom(base_request)
        queue.put_nowait(first)
    else:
        call = start_call(base_request)

        def end_requests() -> None:
            return None

    try:
        await _serve_websocket(ws, binding, codec, base_request, call, budget,
                               queue if binding.client_streaming else None)
    finally:
        end_requests()  # the reader, the queue's only other writer, has stopped by now
        call.cancel()


async def _serve_websocket(ws: WebSocket, binding: Binding, codec: Codec, base_request: Message, call: Any,
                           budget: FrameBudget, queue: asyncio.Queue | None) -> None:
    profile = binding.profile
    if profile is not None and profile.upgrade_after_headers:
        refused = await _refusal_before_headers(call, codec)
        if refused is not None:
            await deny_upgrade(ws, *refused, profile)
            return
    elif not binding.client_streaming:
        # Open once the upstream has answered with its headers (a server that sends them when it is
        # subscribed makes "open" mean "nothing after this is missed"), or after the first-message window.
        await _upstream_headers(call)
    await ws.accept()

    async def inbound() -> None:
        while True:
            event = await _admitted_frame(ws, budget)
            if not binding.client_streaming:
                continue  # a server stream takes its request from the URL; frames are ignored
            text = event.get("text")
            if text is None and event.get("bytes") is not None:
                text = event["bytes"].decode("utf-8", "replace")
            message = binding.request_class()
            try:
                codec.merge(codec.load_json((text or "").encode()), message, "frame", profile=profile)
            except BridgeError:
                if profile is None or not profile.bad_frame_reply:
                    raise
                await ws.send_text(profile.bad_frame_reply)  # the seed's answer; the socket stays open
                continue
            fill_unset(message, base_request)
            assert queue is not None
            await queue.put(message)

    async def outbound() -> None:
        async for message in call:
            await ws.send_text(dump_json(frame_payload(binding, codec, message)).decode())

    reader = asyncio.ensure_future(inbound())
    writer = asyncio.ensure_future(outbound())
    close_code, reason = 1000, ""
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finished = done.pop()
        exc = finished.exception()
        if isinstance(exc, WebSocketDisconnect):
            return  # the client left: the caller cancels the upstream call
        if isinstance(exc, _FrameRefused):
            close_code, reason = exc.code, close_reason(exc.reason)
        elif exc is not None:
            status = status_of(exc, codec.pool)
            close_code = errors.WEBSOCKET_CLOSE_BASE + int(status["code"])
            reason = close_reason(status["message"])
    finally:
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task
        call.cancel()  # before the close frame: the upstream is gone by the time the client knows
    with contextlib.suppress(Exception):
        await ws.close(code=close_code, reason=reason)


async def websocket_feed(ws: WebSocket, subscription: Subscription, *, limits: FrameLimits) -> None:
    """A server stream's shared feed over a WebSocket: accepted once the feed's upstream has
    answered (or the first-message window passed), the feed's text frames out, inbound frames only
    counted against `limits`; the close code says how the stream ended (4008 with the sequence to
    resume from, for a subscriber that fell behind)."""
    binding, codec = subscription.binding, subscription.feeds.codec
    profile = binding.profile
    error = await subscription.open(FIRST_MESSAGE_WINDOW, until_headers=True)
    if error is not None:
        subscription.close()
        if isinstance(error, grpc.aio.AioRpcError):
            status, body = errors.from_rpc_error(error, codec.pool)
        else:
            status, body = getattr(error, "http", 500), status_of(error, codec.pool)
        if profile is not None and profile.upgrade_after_headers:
            await deny_upgrade(ws, status, body, profile)
            return
        await ws.accept()
        await ws.close(code=errors.WEBSOCKET_CLOSE_BASE + int(body["code"]),
                       reason=close_reason(body["message"]))
        return
    await ws.accept()
    subscription.subscriber.sink = direct.sink_of(ws.scope)  # open: frames may go straight out
    budget = FrameBudget(limits)

    async def inbound() -> None:
        while True:  # a shared feed takes no frames: they are only counted against the budget
            await _admitted_frame(ws, budget)

    async def outbound() -> None:
        async for frames in subscription.frames():
            for text in frames:
                await ws.send_text(text)

    reader = asyncio.ensure_future(inbound())
    writer = asyncio.ensure_future(outbound())
    subscription.watch_writer(writer)
    close_code, reason = 1000, ""
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        if first.cancelled():  # its writer was stuck past OVERFLOW_GRACE: the client reads nothing
            return
        exc = first.exception()
        if isinstance(exc, WebSocketDisconnect):
            return
        if isinstance(exc, _FrameRefused):
            close_code, reason = exc.code, close_reason(exc.reason)
        elif subscription.subscriber.status is not None:
            status = subscription.subscriber.status
            close_code = errors.WEBSOCKET_CLOSE_BASE + int(status["code"])
            reason = close_reason(status["message"])
    finally:
        subscription.close()
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task
    with contextlib.suppress(Exception):
        await ws.close(code=close_code, reason=reason)


async def _admitted_frame(ws: WebSocket, budget: FrameBudget) -> dict[str, Any]:
    """The client's next frame event, once its size is within `budget`; a disconnect raises
    WebSocketDisconnect, a frame over the budget _FrameRefused."""
    event = await ws.receive()
    if event["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(event.get("code", 1000))
    frame = event.get("text") if event.get("text") is not None else event.get("bytes") or b""
    refused = budget.admit(len(frame))
    if refused is not None:
        raise _FrameRefused(*refused)
    return event


async def _upstream_headers(call: Any) -> None:
    headers = asyncio.ensure_future(call.initial_metadata())
    ended = asyncio.ensure_future(call.code())
    try:
        await asyncio.wait({headers, ended}, timeout=FIRST_MESSAGE_WINDOW,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (headers, ended):
            if not task.done():
                task.cancel()


async def _refusal_before_headers(call: Any, codec: Codec) -> tuple[int, dict[str, Any]] | None:
    """Wait for the upstream's response headers; (HTTP status, body) if the call failed before them."""
    headers = asyncio.ensure_future(call.initial_metadata())
    ended = asyncio.ensure_future(call.code())
    try:
        await asyncio.wait({headers, ended}, return_when=asyncio.FIRST_COMPLETED)
        if not ended.done() and headers.done() and not headers.result():
            # Empty headers are a trailers-only answer: the status follows at once.
            await asyncio.wait({ended}, timeout=FIRST_MESSAGE_WINDOW)
        if ended.done() and ended.result() != grpc.StatusCode.OK:
            return errors.from_rpc_error(await call_error(call), codec.pool)
        return None
    finally:
        for task in (headers, ended):
            if not task.done():
                task.cancel()


async def deny_upgrade(ws: WebSocket, status: int, body: dict[str, Any], profile: Any) -> None:
    """Answer an upgrade with a plain HTTP error (rendered by the binding's profile) instead of a socket."""
    status, rendered = profile.render_error(status, body)
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(
            Response(dump_json(rendered), status_code=status, media_type="application/json"))
        return
    await ws.accept()  # a server without the denial extension: say it with a close frame instead
    await ws.close(code=errors.WEBSOCKET_CLOSE_BASE + int(body.get("code", 2)),
                   reason=close_reason(str(body.get("message", ""))))


class _FrameRefused(Exception):
    """An inbound frame over the connection's limits: close with `code` and `reason`."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def close_reason(text: str) -> str:
    """`text` cut to what a close frame's reason may hold."""
    raw = text.encode()[:_CLOSE_REASON_BYTES]
    return raw.decode("utf-8", "ignore")


