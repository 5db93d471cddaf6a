"""The bridge's share of telemetry: a SERVER span per request and its metrics, and /metrics.

The span starts from the request's W3C `traceparent` (or a new trace), is current while the bridge
calls upstream (metadata.py puts its context into the gRPC metadata), and its own traceparent goes back
in the response headers. With tracing off, a caller's traceparent is passed upstream unchanged.
Requests are labelled by the RPC they reached (bounded), never by their raw path.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest, multiprocess
from starlette.requests import Request
from starlette.responses import Response

from services.kit.telemetry import metrics, tracing

BINDING_KEY = "agora.binding"  # the bridge puts the resolved Binding in the scope under this key
# The bridge's own routes: app.py sends them through Starlette's router rather than the transcoder,
# and each is its own `route` label here.
FIXED_PREFIXES = ("/openapi.json", "/health", "/livez", "/docs", "/metrics")
_TRACEPARENT = b"traceparent"


def _route(scope) -> str:
    binding = scope.get(BINDING_KEY)
    if binding is not None:
        return binding.method.full_name
    path = scope.get("path", "")
    for prefix in FIXED_PREFIXES:
        if path.startswith(prefix):
            return prefix
    return "static"  # or a 404: whatever the route table did not match


def outbound(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Trace metadata for the upstream call: the current (bridge) span's, or the caller's as it came."""
    if tracing.enabled():
        return list(tracing.inject().items())
    return [(k.decode("latin-1"), v.decode("latin-1"))
            for k, v in headers if k in (b"traceparent", b"tracestate")]


class TelemetryMiddleware:
    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
        started = time.perf_counter()
        status = 0
        span = token = header = None
        if tracing.enabled():
            parent = tracing.extract_pairs(scope["headers"])
            span = tracing.start(method, tracing.SpanKind.SERVER, parent, {
                "http.request.method": method, "url.path": scope.get("path", ""),
                "network.protocol.name": kind,
            })
            token = tracing.activate(span)
            header = (_TRACEPARENT, tracing.traceparent(span).encode())

        async def send_observed(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if header is not None:
                    message["headers"] = [*(message.get("headers") or []), header]
            elif message["type"] == "websocket.accept":
                status = 101
            await send(message)

        active = metrics.http_active(kind)
        active.inc()
        error = None
        try:
            await self.app(scope, receive, send_observed)
        except BaseException as exc:
            error = type(exc).__name__
            status = status or 500
            raise
        finally:
            active.dec()
            route = _route(scope)
            metrics.http_duration(route, method, str(status)).observe(time.perf_counter() - started)
            if span is not None:
                tracing.deactivate(token)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                span.set_attribute("agora.request_id", scope.get("agora.request_id", ""))
                tracing.end(span, error or (f"HTTP {status}" if status >= 500 else None))


async def metrics_page(_: Request) -> Response:
    """Prometheus text format of this process's registry (the bridge's and, under `agora up`, \
every domain's); under `--workers N` (PROMETHEUS_MULTIPROC_DIR set), of every worker together."""
    body = await asyncio.to_thread(_exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _exposition() -> bytes:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    # prometheus-client's multiprocess mode (gateway/workers.py gives every worker the directory):
    # counters and histograms add up across workers, dead ones included, gauges are "livesum"
    # (services/kit/telemetry/metrics.py); the process_* and python_* collectors are per process
    # and have no multiprocess form, so they are left out rather than showing one worker.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


# Calls the request batcher (batching.py) coalesced into one upstream batch call, by batch method.
batch_size = Histogram("agora_bridge_batch_size", "Calls coalesced into one upstream batch call",
                       ["method"], buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
