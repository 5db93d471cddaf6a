"""A unary or server-streaming call over plain HTTP: the request from path, query and body, the answer JSON.

Server streams answer as SSE (when the client accepts text/event-stream) or NDJSON (streaming.py).
A Grpc-Timeout header sets the call's deadline; without one a unary call gets the bridge's default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import auth, errors, streaming
from gateway.batching import Batchers
from gateway.body import BodyReader
from gateway.codec import Codec, payload
from gateway.errors import BridgeError
from gateway.feeds import NDJSON, SSE, Feeds, Subscription, serve_http
from gateway.metadata import OutgoingMetadata
from gateway.request_id import REQUEST_ID_HEADER, request_id
from gateway.responses import send_json
from gateway.routes import Binding
from gateway.upstreams import Upstreams

_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_grpc_timeout(value: str) -> float:
    """Grpc-Timeout as gRPC spells it on the wire: up to 8 digits and a unit (H M S m u n)."""
    if len(value) < 2 or len(value) > 9 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        raise errors.bad_request(f"Grpc-Timeout {value!r} is not <digits><H|M|S|m|u|n>")
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


def http_code(initial, default: int) -> int:
    """grpc-gateway's convention: an `x-http-code` response header from the server sets the status."""
    for key, value in initial or ():
        if key == "x-http-code":
            text = value.decode() if isinstance(value, bytes) else value
            if text.isdigit() and 200 <= int(text) < 600:
                return int(text)
    return default


class HttpCalls:
    """Transcodes one HTTP request into one upstream call and its answer back."""

    def __init__(self, codec: Codec, upstreams: Upstreams, metadata: OutgoingMetadata, body: BodyReader, *,
                 csrf: auth.CsrfGuard, default_timeout: float | None, heartbeat: float,
                 feeds: Feeds | None = None, batchers: Batchers | None = None):
        self.codec = codec
        self.feeds = feeds
        self.batchers = batchers  # methods declaring (agora.api.v1.batching)
        self.csrf = csrf
        self.upstreams = upstreams
        self.metadata = metadata
        self.body = body
        self.default_timeout = default_timeout
        self.heartbeat = heartbeat

    async def __call__(self, scope, receive: Callable, send: Callable, binding: Binding, path_values) -> None:
        method = scope["method"]
        headers = scope["headers"]
        accept = content_length = grpc_timeout = last_event_id = None
        for key, value in headers:
            if key == b"accept":
                accept = value
            elif key == b"content-length":
                content_length = value
            elif key == b"grpc-timeout":
                grpc_timeout = value.decode("latin-1")
            elif key == b"last-event-id":
                last_event_id = value.decode("latin-1")
        profile = binding.profile
        set_cookie = csrf = None
        if profile is not None and profile.issue_csrf_token:
            set_cookie, csrf = self.issue_csrf(scope, headers)
        metadata = self.metadata.build(scope, method, extra=[csrf] if csrf is not None else ())
        self.metadata.check_size(metadata)
        if binding.client_streaming:
            raise BridgeError(
                code_pb2.FAILED_PRECONDITION,
                f"{binding.method.full_name} is a bidirectional stream: open a WebSocket on this path",
                http=426,
                headers={"upgrade": "websocket", "connection": "Upgrade"},
            )
        body = None
        if binding.body:
            raw = await self.body.read(receive, content_length)
            body = self.codec.load_json(raw)
            lenient = binding.profile is not None and binding.profile.ignore_unknown_fields
            whole = binding.body_field is None or binding.body_field.message_type is not None
            if body is None and raw.strip() and whole and not lenient:
                # The document's body is an object; JSON null is not one (no body at all is fine;
                # the seeds' routes decode as Go does, where null is a no-op).
                raise errors.bad_request("the body is JSON null: send an object, or no body")
        query_string = scope.get("query_string", b"")
        items = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True) if query_string else ()
        request = binding.base_request(self.codec, path_values, items, body)
        call_fn = self.upstreams.callable(binding)
        rid = request_id(scope)
        rid_header = [(REQUEST_ID_HEADER, rid.encode())] if rid else []
        if binding.server_streaming:
            streaming.apply_last_event_id(binding, request, last_event_id)
            timeout = parse_grpc_timeout(grpc_timeout) if grpc_timeout else None
            sse = accept is not None and b"text/event-stream" in accept
            if binding.feed is not None and self.feeds is not None:
                # One upstream call for every identical subscription (feeds.py); a deadline is the
                # subscriber's own, not the shared call's.
                subscription = Subscription(self.feeds, binding, request, metadata, SSE if sse else NDJSON)
                await serve_http(subscription, scope, receive, send, rid_header,
                                 deadline=time.monotonic() + timeout if timeout else None)
                return
            call = call_fn(request, metadata=metadata, timeout=timeout)
            stream = streaming.HttpStream(binding, self.codec, call, sse=sse, heartbeat=self.heartbeat)
            await stream(receive, send, rid_header)
            return
        timeout = parse_grpc_timeout(grpc_timeout) if grpc_timeout else self.default_timeout
        batcher = self.batchers.get(binding) if self.batchers else None
        call_fn = batcher.call if batcher is not None else call_fn
        call = call_fn(request, metadata=metadata, timeout=timeout)
        response: Message = await call
        body = payload(response, binding.response_body, self.codec, profile)
        out_headers = [*rid_header]
        status = 200 if profile is None else profile.success_status
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
        if initial or trailing:
            status = http_code(initial, status)
            out_headers.extend(auth.response_headers(initial, trailing))
        if set_cookie is not None:
            out_headers.append((b"set-cookie", set_cookie.encode("latin-1")))
        await send_json(send, status, body, out_headers)

    def issue_csrf(self, scope, headers) -> tuple[str | None, tuple[str, str]]:
        """A fresh token for the caller's CSRF cookie, as the metadata entry the method reads, and a
        Set-Cookie value when the caller has no valid cookie yet (None when it has)."""
        secret = self.csrf.verify(auth.cookie_value(headers, auth.CSRF_COOKIE))
        cookie = None
        if secret is None:
            secret, value = self.csrf.mint()
            cookie = self.csrf.cookie_header(value, secure=scope.get("scheme") == "https")
        return cookie, (auth.CSRF_METADATA, self.csrf.token(secret))
