"""Forward gRPC streams: server streams as SSE, NDJSON or WebSocket; bidi streams over WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway import auth, errors
from gateway.codec import Codec, dump_json, payload
from gateway.errors import BridgeError
from gateway.limits import FrameBudget, FrameLimits
from gateway.routes import Binding

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
SEQUENCE_FIELD = "sequence"
RESUME_FIELD = "resume_from"
# How long to hold the HTTP status back waiting for the first message: an RPC that fails at once
# still gets its real HTTP status; a quiet live stream gets its 200 and heartbeats soon after.
FIRST_MESSAGE_WINDOW = 0.25
_CLOSE_REASON_BYTES = 123  # RFC 6455 limit for a close frame's reason


def sequence_field(binding: Binding) -> FieldDescriptor | None:
    f = binding.method.output_type.fields_by_name.get(SEQUENCE_FIELD)
    return f if f is not None and f.message_type is None and not f.is_repeated else None


def apply_last_event_id(binding: Binding, request: Message, last_event_id: str | None) -> None:
    """SSE reconnect: Last-Event-ID becomes the request's resume_from, so the upstream replays the gap."""
    if not last_event_id:
        return
    f = binding.method.input_type.fields_by_name.get(RESUME_FIELD)
    if f is None or f.message_type is not None:
        return
    try:
        setattr(request, RESUME_FIELD, int(last_event_id) if f.cpp_type != f.CPPTYPE_STRING else last_event_id)
    except (ValueError, TypeError):
        raise errors.bad_request(f"Last-Event-ID {last_event_id!r} is not a valid {RESUME_FIELD}") from None


def _payload(binding: Binding, codec: Codec, message: Message) -> Any:
    return payload(message, binding.response_body, codec, binding.profile)


def _status_of(exc: BaseException, pool) -> dict[str, Any]:
    if isinstance(exc, grpc.aio.AioRpcError):
        return errors.from_rpc_error(exc, pool)[1]
    if isinstance(exc, BridgeError):
        return exc.body()
    return {"code": code_pb2.INTERNAL, "message": "stream failed", "details": []}


class HttpStream:
    """One server stream over a plain HTTP response, SSE or NDJSON, one message in flight at a time."""

    def __init__(self, binding: Binding, codec: Codec, call: Any, *, sse: bool, heartbeat: float):
        self.binding = binding
        self.codec = codec
        self.call = call
        self.sse = sse
        self.heartbeat = heartbeat
        self.sequence = sequence_field(binding) if sse else None

    def frame(self, message: Message) -> bytes:
        data = dump_json(_payload(self.binding, self.codec, message))
        if not self.sse:
            return b'{"result":' + data + b"}\n"
        if self.sequence is not None:
            return b"id: " + str(getattr(message, self.sequence.name)).encode() + b"\ndata: " + data + b"\n\n"
        return b"data: " + data + b"\n\n"

    def error_frame(self, status: dict[str, Any]) -> bytes:
        if self.sse:
            return b"event: error\ndata: " + dump_json(status) + b"\n\n"
        return dump_json({"error": status}) + b"\n"

    async def __call__(self, receive: Callable, send: Callable, headers: list[tuple[bytes, bytes]]) -> None:
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        pump = asyncio.ensure_future(self._pump(send, headers))
        try:
            await asyncio.wait({watcher, pump}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Whichever side ends first ends the other: a gone client cancels the upstream call at once.
            self.call.cancel()
            for task in (watcher, pump):
                task.cancel()
            for task in (watcher, pump):
                with contextlib.suppress(BaseException):
                    await task

    async def _pump(self, send: Callable, headers: list[tuple[bytes, bytes]]) -> None:
        reading = asyncio.ensure_future(self.call.read())
        done, _ = await asyncio.wait({reading}, timeout=FIRST_MESSAGE_WINDOW)
        if done and reading.exception() is not None:
            await _send_error_response(send, reading.exception(), self.codec, headers)
            return
        if done and reading.result() is grpc.aio.EOF:
            code = await self.call.code()
            if code != grpc.StatusCode.OK:
                await _send_error_response(send, await _call_error(self.call), self.codec, headers)
                return
        upstream_headers: list[tuple[bytes, bytes]] = []
        if done:
            with contextlib.suppress(Exception):
                upstream_headers = auth.response_headers(await self.call.initial_metadata())
        content_type = (SSE if self.sse else NDJSON).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", content_type),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),  # nginx would otherwise buffer the stream
                    *headers,
                    *upstream_headers,
                ],
            }
        )
        if self.sse:
            await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
        try:
            while True:
                done, _ = await asyncio.wait({reading}, timeout=self.heartbeat)
                if not done:
                    if self.sse:
                        await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                    continue
                message = reading.result()
                if message is grpc.aio.EOF:
                    code = await self.call.code()
                    if code != grpc.StatusCode.OK:
                        raise await _call_error(self.call)
                    break
                await send({"type": "http.response.body", "body": self.frame(message), "more_body": True})
                reading = asyncio.ensure_future(self.call.read())
        except (grpc.aio.AioRpcError, BridgeError) as exc:
            tail = self.error_frame(_status_of(exc, self.codec.pool))
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        finally:
            reading.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _call_error(call: Any) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        await call.code(), await call.initial_metadata(), await call.trailing_metadata(), await call.details()
    )


async def _send_error_response(send: Callable, exc: BaseException, codec: Codec, headers: list) -> None:
    if isinstance(exc, grpc.aio.AioRpcError):
        status, body = errors.from_rpc_error(exc, codec.pool)
    elif isinstance(exc, BridgeError):
        status, body = exc.http, exc.body()
    else:
        raise exc
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": errors.encode(body)})


async def _wait_disconnect(receive: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


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
    await ws.accept()

    async def inbound() -> None:
        while True:
            event = await ws.receive()
            if event["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(event.get("code", 1000))
            frame = event.get("text") if event.get("text") is not None else event.get("bytes") or b""
            refused = budget.admit(len(frame))
            if refused is not None:
                raise _FrameRefused(*refused)
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
            await ws.send_text(dump_json(_payload(binding, codec, message)).decode())

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
            close_code, reason = exc.code, _truncate(exc.reason)
        elif exc is not None:
            status = _status_of(exc, codec.pool)
            close_code = errors.WEBSOCKET_CLOSE_BASE + int(status["code"])
            reason = _truncate(status["message"])
    finally:
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(BaseException):
                await task
        call.cancel()  # before the close frame: the upstream is gone by the time the client knows
    with contextlib.suppress(Exception):
        await ws.close(code=close_code, reason=reason)


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
            return errors.from_rpc_error(await _call_error(call), codec.pool)
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
                   reason=_truncate(str(body.get("message", ""))))


class _FrameRefused(Exception):
    """An inbound frame over the connection's limits: close with `code` and `reason`."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def _truncate(text: str) -> str:
    raw = text.encode()[:_CLOSE_REASON_BYTES]
    return raw.decode("utf-8", "ignore")


