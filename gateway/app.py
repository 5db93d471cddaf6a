"""The bridge as a Starlette app: the fixed routes (docs, health, metrics) around the transcoding Bridge."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.rpc import code_pb2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway import telemetry
from gateway.bridge import Bridge
from gateway.limits import ClientLimits, FrameLimits, SecurityHeadersMiddleware
from gateway.request_id import RequestIdMiddleware
from gateway.telemetry import FIXED_PREFIXES

PACKAGE_STATIC = Path(__file__).parent / "static"


class BridgeApp(Starlette):
    """Starlette for the few fixed routes; transcoded calls skip the router for a shorter hot path."""

    fast: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(FIXED_PREFIXES):
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
    edge_key: str = "",
    feed_budget_bytes: int = 0,
) -> Starlette:
    """The bridge for every service in `descriptor_set` that has an upstream ("*" names a default).

    `client_limits` turns on per-address rate limits (login, writes); `frame_limits` bounds WebSocket
    frames; `channel_credentials` makes the upstream channels TLS; `csrf_key` signs the CSRF cookie
    (random per process when not given: bridge replicas behind one load balancer must share one);
    `edge_key` (the service credential) signs the caller's address for servers that limit by it;
    `feed_budget_bytes` is what a shared feed's log subscriber may have waiting (0: 1 MiB).
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
        edge_key=edge_key,
        feed_budget_bytes=feed_budget_bytes,
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
        await bridge.batchers.close()  # what waits in a batch goes out before the channels close
        await bridge.feeds.close()
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
