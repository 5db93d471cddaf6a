"""Forward gRPC server streams over plain HTTP as SSE or NDJSON; the helpers WebSocket streams share.

Streams over WebSocket, server and bidi, are in websockets.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import auth, errors
from gateway.codec import Codec, dump_json, payload
from gateway.errors import BridgeError
from gateway.responses import send_json
from gateway.routes import Binding

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
SEQUENCE_FIELD = "sequence"
RESUME_FIELD = "resume_from"
# How long to hold the HTTP status back waiting for the first message: an RPC that fails at once
# still gets its real HTTP status; a quiet live stream gets its 200 and heartbeats soon after.
FIRST_MESSAGE_WINDOW = 0.25


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
        value = int(last_event_id) if f.cpp_type != f.CPPTYPE_STRING else last_event_id
        setattr(request, RESUME_FIELD, value)
    except (ValueError, TypeError):
        raise errors.bad_request(f"Last-Event-ID {last_event_id!r} is not a valid {RESUME_FIELD}") from None


def frame_payload(binding: Binding, codec: Codec, message: Message) -> Any:
    """What one stream frame carries as JSON."""
    return payload(message, binding.response_body, codec, binding.profile)


def status_of(exc: BaseException, pool) -> dict[str, Any]:
    """The {"code","message","details"} body a stream ends with when `exc` ended it."""
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
        data = dump_json(frame_payload(self.binding, self.codec, message))
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
        watcher = asyncio.ensure_future(wait_disconnect(receive))
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
            await send_error_response(send, reading.exception(), self.codec, headers)
            return
        if done and reading.result() is grpc.aio.EOF:
            code = await self.call.code()
            if code != grpc.StatusCode.OK:
                await send_error_response(send, await call_error(self.call), self.codec, headers)
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
                        keepalive = b": keepalive\n\n"
                        await send({"type": "http.response.body", "body": keepalive, "more_body": True})
                    continue
                message = reading.result()
                if message is grpc.aio.EOF:
                    code = await self.call.code()
                    if code != grpc.StatusCode.OK:
                        raise await call_error(self.call)
                    break
                await send({"type": "http.response.body", "body": self.frame(message), "more_body": True})
                reading = asyncio.ensure_future(self.call.read())
        except (grpc.aio.AioRpcError, BridgeError) as exc:
            tail = self.error_frame(status_of(exc, self.codec.pool))
            await send({"type": "http.response.body", "body": tail, "more_body": False})
            return
        finally:
            reading.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def call_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a finished call ended with, as the exception a failed read would have raised."""
    return grpc.aio.AioRpcError(
        await call.code(), await call.initial_metadata(), await call.trailing_metadata(), await call.details()
    )


async def send_error_response(send: Callable, exc: BaseException, codec: Codec, headers: list) -> None:
    if isinstance(exc, grpc.aio.AioRpcError):
        status, body = errors.from_rpc_error(exc, codec.pool)
    elif isinstance(exc, BridgeError):
        status, body = exc.http, exc.body()
    else:
        raise exc
    await send_json(send, status, body, headers)


async def wait_disconnect(receive: Callable) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
