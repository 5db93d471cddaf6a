"""The bridge as a Starlette app: route table, upstream channels, unary calls, docs, health, static files."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import grpc
from google.protobuf.message import Message
from google.rpc import code_pb2
from grpc_health.v1 import health_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from gateway import auth, descriptors, errors, streaming, telemetry
from gateway.codec import Codec, dump_json, payload
from gateway.edge import metadata_size
from gateway.errors import BridgeError
from gateway.limits import ClientLimits, FrameLimits, RateLimiter, SecurityHeadersMiddleware
from gateway.openapi import build_openapi
from gateway.profiles import Profile
from gateway.routes import Binding, RouteTable, build_bindings

PACKAGE_STATIC = Path(__file__).parent / "static"
DEFAULT_UPSTREAM = "*"  # upstreams key naming the target for services not listed by name
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_JSON_HEADERS = [(b"content-type", b"application/json")]
# Generated ids: a random per-process prefix and a counter, unique without a urandom call per request.
_request_ids = (f"{uuid.uuid4().hex[:16]}-{n:x}" for n in itertools.count(1))
_FIXED_PREFIXES = ("/openapi.json", "/health", "/livez", "/docs", "/metrics")
log = logging.getLogger("agora.gateway")


def parse_grpc_timeout(value: str) -> float:
    """Grpc-Timeout as gRPC spells it on the wire: up to 8 digits and a unit (H M S m u n)."""
    if len(value) < 2 or len(value) > 9 or not value[:-1].isdigit() or value[-1] not in _TIMEOUT_UNITS:
        raise errors.bad_request(f"Grpc-Timeout {value!r} is not <digits><H|M|S|m|u|n>")
    return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]


class Upstreams:
    """One persistent grpc.aio channel per target, and the multi-callables built on them, made once."""

    def __init__(self, targets: Mapping[str, str], options: Sequence[tuple[str, Any]] = (),
                 credentials: grpc.ChannelCredentials | None = None):
        self.targets = dict(targets)
        self.options = list(options)
        self.credentials = credentials  # TLS to the upstreams when set
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[str, Any] = {}

    def target(self, service: str) -> str | None:
        return self.targets.get(service) or self.targets.get(DEFAULT_UPSTREAM)

    def channel(self, target: str) -> grpc.aio.Channel:
        ch = self._channels.get(target)
        if ch is None:
            if self.credentials is not None:
                ch = grpc.aio.secure_channel(target, self.credentials, options=self.options)
            else:
                ch = grpc.aio.insecure_channel(target, options=self.options)
            self._channels[target] = ch
        return ch

    def callable(self, binding: Binding) -> Any:
        key = binding.rpc_path
        fn = self._callables.get(key)
        if fn is None:
            target = self.target(binding.service)
            if target is None:
                raise BridgeError(code_pb2.UNAVAILABLE, f"no upstream configured for {binding.service}")
            ch = self.channel(target)
            kind = {
                (False, False): ch.unary_unary,
                (False, True): ch.unary_stream,
                (True, False): ch.stream_unary,
                (True, True): ch.stream_stream,
            }[(binding.client_streaming, binding.server_streaming)]
            fn = kind(
                key,
                request_serializer=binding.request_class.SerializeToString,
                response_deserializer=binding.response_class.FromString,
            )
            self._callables[key] = fn
        return fn

    async def close(self) -> None:
        channels, self._channels, self._callables = self._channels, {}, {}
        for ch in channels.values():
            with contextlib.suppress(Exception):
                await ch.close()


class Bridge:
    """The transcoding ASGI app: everything that is not /openapi.json, /docs or /health."""

    def __init__(
        self,
        descriptor_set: bytes,
        upstreams: Mapping[str, str],
        *,
        default_timeout: float | None,
        max_body_bytes: int,
        heartbeat_interval: float,
        cors_origins: Sequence[str],
        static_dir: Path | None,
        channel_options: Sequence[tuple[str, Any]],
        title: str,
        client_limits: ClientLimits | None = None,
        frame_limits: FrameLimits | None = None,
        channel_credentials: grpc.ChannelCredentials | None = None,
        csrf_key: bytes | None = None,
        max_metadata_bytes: int = 7 * 1024,
    ):
        self.ds = descriptors.load(descriptor_set)
        self.max_metadata_bytes = max_metadata_bytes
        self.csrf = auth.CsrfGuard(csrf_key)
        self.upstreams = Upstreams(upstreams, channel_options, channel_credentials)
        self.limiter = RateLimiter(client_limits) if client_limits is not None else None
        self.frame_limits = frame_limits or FrameLimits()
        served = [s.full_name for s in self.ds.services if self.upstreams.target(s.full_name)]
        self.bindings = build_bindings(self.ds, served)
        self.table = RouteTable(self.bindings)
        self.codec = Codec(self.ds.pool)
        self.default_timeout = default_timeout
        self.max_body_bytes = max_body_bytes
        self.heartbeat = heartbeat_interval
        self.cors_origins = set(cors_origins)
        self.static = StaticFiles(directory=static_dir, html=True) if static_dir else None
        self.served_services = served
        self.openapi_bytes = dump_json(build_openapi(self.ds, self.bindings, title=title))

    # -- ASGI entry

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(WebSocket(scope, receive, send))
            return
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else scope["path"]
        rid = scope.get("agora.request_id", "")
        try:
            binding, path_values = self.table.resolve(method, path)
            scope[telemetry.BINDING_KEY] = binding
        except BridgeError as exc:
            if exc.http == 404 and method in ("GET", "HEAD") and self.static is not None:
                try:
                    await self.static(scope, receive, send)
                except HTTPException as missing:
                    await send_error(send, missing.status_code, exc.body())
                return
            await send_error(send, exc.http, exc.body(), exc.headers)
            return
        try:
            if self.limiter is not None:
                client = scope.get("client")
                self.limiter.check(method, binding.method.full_name, client[0] if client else "")
            await self.transcode(scope, receive, send, binding, path_values, rid)
        except BridgeError as exc:
            await send_error(send, exc.http, exc.body(), exc.headers, binding.profile)
        except grpc.aio.AioRpcError as exc:
            status, body = errors.from_rpc_error(exc, self.ds.pool)
            await send_error(send, status, body, None, binding.profile)
        except Exception:
            # A bug of ours: log it, answer 500 in the usual shape if the response has not started.
            log.exception("bridge failed on %s %s", method, path)
            with contextlib.suppress(Exception):
                await send_error(send, 500, {"code": code_pb2.INTERNAL, "message": "bridge error", "details": []})

    async def transcode(self, scope, receive, send, binding: Binding, path_values, rid: str) -> None:
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
        metadata = auth.outbound_metadata(method, headers, csrf=self.csrf)
        profile = binding.profile
        set_cookie = None
        if profile is not None and profile.issue_csrf_token:
            set_cookie = self.issue_csrf(scope, headers, metadata)
        if rid:
            metadata.append(("x-request-id", rid))
        metadata.extend(telemetry.outbound(headers))
        client = scope.get("client")
        if client:
            metadata.append(("x-forwarded-for", client[0]))
        self.check_metadata(metadata)
        if binding.client_streaming:
            raise BridgeError(
                code_pb2.FAILED_PRECONDITION,
                f"{binding.method.full_name} is a bidirectional stream: open a WebSocket on this path",
                http=426,
                headers={"upgrade": "websocket", "connection": "Upgrade"},
            )
        body = None
        if binding.body:
            raw = await self.read_body(receive, content_length)
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
        rid_header = [(REQUEST_ID_HEADER, rid.encode())] if rid else []
        if binding.server_streaming:
            streaming.apply_last_event_id(binding, request, last_event_id)
            timeout = parse_grpc_timeout(grpc_timeout) if grpc_timeout else None
            call = call_fn(request, metadata=metadata, timeout=timeout)
            sse = accept is not None and b"text/event-stream" in accept
            stream = streaming.HttpStream(binding, self.codec, call, sse=sse, heartbeat=self.heartbeat)
            await stream(receive, send, rid_header)
            return
        timeout = parse_grpc_timeout(grpc_timeout) if grpc_timeout else self.default_timeout
        call = call_fn(request, metadata=metadata, timeout=timeout)
        response: Message = await call
        body = payload(response, binding.response_body, self.codec, profile)
        out_headers = [(b"content-type", b"application/json"), *rid_header]
        status = 200 if profile is None else profile.success_status
        initial = await call.initial_metadata()
        trailing = await call.trailing_metadata()
        if initial or trailing:
            status = http_code(initial, status)
            out_headers.extend(auth.response_headers(initial, trailing))
        if set_cookie is not None:
            out_headers.append((b"set-cookie", set_cookie.encode("latin-1")))
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await send({"type": "http.response.body", "body": dump_json(body)})

    def check_metadata(self, metadata: list) -> None:
        """431 here rather than a RESOURCE_EXHAUSTED from the upstream's own limit (8 KiB in gRPC),
        which reads as a rate limit (429) and comes after a round trip."""
        size = metadata_size(metadata)
        if self.max_metadata_bytes and size > self.max_metadata_bytes:
            raise BridgeError(
                code_pb2.RESOURCE_EXHAUSTED,
                f"request headers forwarded as gRPC metadata (Authorization, Grpc-Metadata-*, cookies) "
                f"take {size} bytes; the limit is {self.max_metadata_bytes}",
                http=431,
            )

    def issue_csrf(self, scope, headers, metadata: list) -> str | None:
        """Hand the method a fresh token for the caller's CSRF cookie; a new cookie when it has none."""
        secret = self.csrf.verify(auth.cookie_value(headers, auth.CSRF_COOKIE))
        cookie = None
        if secret is None:
            secret, value = self.csrf.mint()
            cookie = self.csrf.cookie_header(value, secure=scope.get("scheme") == "https")
        metadata.append((auth.CSRF_METADATA, self.csrf.token(secret)))
        return cookie

    async def read_body(self, receive, content_length: bytes | None) -> bytes:
        limit = self.max_body_bytes
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                raise errors.bad_request("Content-Length is not a number") from None
            if declared > limit:
                raise await _too_large(receive, limit, declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BridgeError(code_pb2.CANCELLED, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise await _too_large(receive, limit, None, more=message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- WebSocket

    async def websocket(self, ws: WebSocket) -> None:
        path = ws.scope.get("raw_path", b"").decode("latin-1").partition("?")[0] or ws.scope["path"]
        binding = None
        try:
            binding, path_values = self.table.resolve("GET", path)
            ws.scope[telemetry.BINDING_KEY] = binding
            if not binding.server_streaming and not binding.client_streaming:
                raise BridgeError(code_pb2.UNIMPLEMENTED, f"{binding.method.full_name} is unary: use HTTP")
            headers = ws.scope["headers"]
            metadata = auth.outbound_metadata("GET", headers, websocket=True, csrf=self.csrf)
            self.check_origin(ws, metadata)
            rid = ws.scope.get("agora.request_id", "")
            if rid:
                metadata.append(("x-request-id", rid))
            metadata.extend(telemetry.outbound(headers))
            client = ws.scope.get("client")
            if client:
                metadata.append(("x-forwarded-for", client[0]))
            self.check_metadata(metadata)
            items = parse_qsl(ws.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
            base = binding.base_request(self.codec, path_values, items, None)
            call_fn = self.upstreams.callable(binding)
        except BridgeError as exc:
            profile = binding.profile if binding is not None else None
            if profile is not None and profile.upgrade_after_headers:
                await streaming.deny_upgrade(ws, exc.http, exc.body(), profile)
                return
            await ws.accept()
            await ws.close(code=errors.WEBSOCKET_CLOSE_BASE + exc.code, reason=streaming._truncate(exc.message))
            return
        await streaming.websocket_stream(
            ws, binding, self.codec, base, lambda req: call_fn(req, metadata=metadata), limits=self.frame_limits
        )

    def check_origin(self, ws: WebSocket, metadata: list) -> None:
        """Cookie-authenticated WebSockets only from our own origin or a configured CORS origin."""
        origin = ws.headers.get("origin")
        if not origin or "authorization" in ws.headers:
            return
        if not any(k == "authorization" for k, _ in metadata):
            return
        if "*" in self.cors_origins or origin in self.cors_origins:
            return
        if urlsplit(origin).netloc == ws.headers.get("host"):
            return
        raise BridgeError(code_pb2.PERMISSION_DENIED, "cross-origin WebSocket with a session cookie")

    # -- /health

    async def health(self) -> tuple[int, dict[str, Any]]:
        async def check(service: str) -> str:
            target = self.upstreams.target(service)
            fn = self.upstreams.channel(target).unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            for name in (service, ""):
                try:
                    reply = await fn(health_pb2.HealthCheckRequest(service=name), timeout=2.0)
                    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
                except grpc.aio.AioRpcError as exc:
                    # A server that registers only the overall status answers NOT_FOUND per service.
                    if exc.code() == grpc.StatusCode.NOT_FOUND and name:
                        continue
                    return f"{exc.code().name}: {exc.details()}"
            return "UNKNOWN"

        services = self.served_services
        results = await asyncio.gather(*(check(s) for s in services))
        status = dict(zip(services, results, strict=True))
        ok = all(r == "SERVING" for r in results)
        return (200 if ok else 503), {"status": "SERVING" if ok else "NOT_SERVING", "services": status}


def http_code(initial, default: int) -> int:
    """grpc-gateway's convention: an `x-http-code` response header from the server sets the status."""
    for key, value in initial or ():
        if key == "x-http-code":
            text = value.decode() if isinstance(value, bytes) else value
            if text.isdigit() and 200 <= int(text) < 600:
                return int(text)
    return default


async def send_error(send, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None,
                     profile: Profile | None = None) -> None:
    """An error response; a binding's profile may render it in its seed's shape."""
    if profile is not None:
        status, body = profile.render_error(status, body)
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": [*_JSON_HEADERS, *extra]})
    await send({"type": "http.response.body", "body": errors.encode(body)})


async def _too_large(receive, limit: int, declared: int | None, *, more: bool = True) -> BridgeError:
    """413; a modest excess is read and dropped so the client sees the answer instead of a reset."""
    drain_cap = 8 * limit
    headers: dict[str, str] = {}
    if declared is not None and declared > drain_cap:
        headers["connection"] = "close"  # too much to swallow: answer and hang up
    else:
        drained = 0
        while more and drained <= drain_cap:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        if more:
            headers["connection"] = "close"
    return BridgeError(
        code_pb2.RESOURCE_EXHAUSTED, f"request body exceeds {limit} bytes", http=413, headers=headers
    )


class RequestIdMiddleware:
    """Echo a sane X-Request-Id or make one; the bridge forwards it as x-request-id metadata."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                text = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    rid = text
                break
        if rid is None:
            rid = next(_request_ids)
        scope["agora.request_id"] = rid
        header = (REQUEST_ID_HEADER, rid.encode())

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if not any(k.lower() == REQUEST_ID_HEADER for k, _ in headers):
                    message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)


class BridgeApp(Starlette):
    """Starlette for the few fixed routes; transcoded calls skip the router for a shorter hot path."""

    fast: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(_FIXED_PREFIXES):
            scope["app"] = self
            await self.fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    descriptor_set: bytes,
    upstreams: Mapping[str, str],
    *,
    default_timeout: float | None = 30.0,
    max_body_bytes: int = 1 << 20,
    cors_origins: Sequence[str] = (),
    static_dir: str | Path | None = PACKAGE_STATIC,
    heartbeat_interval: float = 15.0,
    channel_options: Sequence[tuple[str, Any]] = (),
    title: str = "Agora API",
    client_limits: ClientLimits | None = None,
    frame_limits: FrameLimits | None = None,
    channel_credentials: grpc.ChannelCredentials | None = None,
    csrf_key: bytes | None = None,
    max_metadata_bytes: int = 7 * 1024,
) -> Starlette:
    """The bridge for every service in `descriptor_set` that has an upstream ("*" names a default).

    `client_limits` turns on per-address rate limits (login, writes); `frame_limits` bounds WebSocket
    frames; `channel_credentials` makes the upstream channels TLS; `csrf_key` signs the CSRF cookie
    (random per process when not given: bridge replicas behind one load balancer must share one).
    """
    bridge = Bridge(
        descriptor_set,
        upstreams,
        default_timeout=default_timeout,
        max_body_bytes=max_body_bytes,
        heartbeat_interval=heartbeat_interval,
        cors_origins=cors_origins,
        static_dir=Path(static_dir) if static_dir else None,
        channel_options=channel_options,
        title=title,
        client_limits=client_limits,
        frame_limits=frame_limits,
        channel_credentials=channel_credentials,
        csrf_key=csrf_key,
        max_metadata_bytes=max_metadata_bytes,
    )

    async def openapi(_: Request) -> Response:
        return Response(bridge.openapi_bytes, media_type="application/json")

    async def health(_: Request) -> Response:
        status, body = await bridge.health()
        return JSONResponse(body, status_code=status)

    async def livez(_: Request) -> Response:
        # The bridge process answers: what Kubernetes probes. /health is the mesh's aggregate,
        # and one service being down must not take the bridge out of rotation or restart it.
        return Response(b'{"status":"SERVING"}', media_type="application/json")

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: code_pb2.NOT_FOUND, 405: code_pb2.UNIMPLEMENTED}.get(exc.status_code, code_pb2.UNKNOWN)
        body = {"code": code, "message": str(exc.detail), "details": []}
        return Response(json.dumps(body), status_code=exc.status_code, media_type="application/json",
                        headers=exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await bridge.upstreams.close()

    middleware = [Middleware(telemetry.TelemetryMiddleware), Middleware(SecurityHeadersMiddleware),
                  Middleware(RequestIdMiddleware)]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_credentials="*" not in cors_origins,
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["*"],
                expose_headers=["X-Request-Id"],
            )
        )
    app = BridgeApp(
        routes=[
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/metrics", telemetry.metrics_page, methods=["GET"]),
            Route("/docs", lambda _: RedirectResponse("/docs/"), methods=["GET"]),
            Mount("/docs", StaticFiles(directory=PACKAGE_STATIC / "swagger", html=True)),
            Mount("/", app=bridge),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.bridge = bridge
    fast: Any = bridge
    for m in reversed(middleware):
        fast = m.cls(fast, *m.args, **m.kwargs)
    app.fast = fast
    return app
