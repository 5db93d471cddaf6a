"""The transcoding ASGI app: resolves a request to its binding and hands it to HTTP or WebSocket calls.

Everything that is not /openapi.json, /docs, /health, /livez or /metrics (app.py) comes here;
a GET no binding matches falls through to the static web UI.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
from google.rpc import code_pb2
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from gateway import auth, descriptors, errors, telemetry
from gateway.batching import build_batchers
from gateway.body import BodyReader
from gateway.codec import Codec, dump_json
from gateway.errors import BridgeError
from gateway.feeds import Feeds
from gateway.health import mesh_health
from gateway.limits import ClientLimits, FrameLimits, RateLimiter
from gateway.metadata import OutgoingMetadata
from gateway.openapi import build_openapi
from gateway.responses import send_error
from gateway.routes import RouteTable, build_bindings
from gateway.transcode import HttpCalls
from gateway.upstreams import Upstreams
from gateway.websockets import WebSocketCalls

log = logging.getLogger("agora.gateway")


class Bridge:
    """Builds the bridge's parts from the descriptor set, then routes each request to them."""

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
        edge_key: str = "",
        feed_budget_bytes: int = 0,
    ):
        self.ds = descriptors.load(descriptor_set)
        csrf = auth.CsrfGuard(csrf_key)
        self.upstreams = Upstreams(upstreams, channel_options, channel_credentials)
        self.limiter = RateLimiter(client_limits) if client_limits is not None else None
        served = [s.full_name for s in self.ds.services if self.upstreams.target(s.full_name)]
        self.bindings = build_bindings(self.ds, served)
        self.table = RouteTable(self.bindings)
        self.codec = Codec(self.ds.pool)
        metadata = OutgoingMetadata(csrf, max_metadata_bytes, edge_key=edge_key)
        self.feeds = Feeds(self.codec, self.upstreams, self.ds.message_class, heartbeat=heartbeat_interval,
                           **({"budget": feed_budget_bytes} if feed_budget_bytes else {}))
        self.batchers = build_batchers(descriptor_set, self.ds, self.bindings, self.upstreams)
        self.http = HttpCalls(self.codec, self.upstreams, metadata, BodyReader(max_body_bytes), csrf=csrf,
                              default_timeout=default_timeout, heartbeat=heartbeat_interval, feeds=self.feeds,
                              batchers=self.batchers)
        self.websocket = WebSocketCalls(self.table, self.codec, self.upstreams, metadata,
                                        cors_origins=cors_origins, frame_limits=frame_limits or FrameLimits(),
                                        feeds=self.feeds)
        self.static = StaticFiles(directory=static_dir, html=True) if static_dir else None
        self.served_services = served
        self.openapi_bytes = dump_json(build_openapi(self.ds, self.bindings, title=title))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self.websocket(WebSocket(scope, receive, send))
            return
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1").partition("?")[0] if raw_path else scope["path"]
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
            await self.http(scope, receive, send, binding, path_values)
        except BridgeError as exc:
            await send_error(send, exc.http, exc.body(), exc.headers, binding.profile)
        except grpc.aio.AioRpcError as exc:
            status, body = errors.from_rpc_error(exc, self.ds.pool)
            await send_error(send, status, body, None, binding.profile)
        except Exception:
            # A bug of ours: log it, answer 500 in the usual shape if the response has not started.
            log.exception("bridge failed on %s %s", method, path)
            with contextlib.suppress(Exception):
                await send_error(send, 500, {"code": code_pb2.INTERNAL, "message": "bridge error",
                                             "details": []})

    async def health(self) -> tuple[int, dict[str, Any]]:
        return await mesh_health(self.upstreams, self.served_services)
