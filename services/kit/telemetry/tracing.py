"""Tracing: spans for RPCs, HTTP requests and events, with W3C trace context across every hop.

Off by default and then free: no SDK tracer provider is installed, `enabled()` is False, and every
caller skips span work entirely (one global read). `configure()` installs an SDK provider that
exports over OTLP/HTTP when AGORA_OTLP_ENDPOINT is set; tests `install()` one with an in-memory
exporter. The provider is ours, not OpenTelemetry's process-global one, so a test can install and
remove it at will.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("agora.telemetry")

TRACE_HEADERS = ("traceparent", "tracestate")
_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None  # None: tracing is off
_provider: Any = None

__all__ = ["SpanKind", "configure", "enabled", "install", "uninstall"]


def enabled() -> bool:
    return _tracer is not None


def tracer() -> trace.Tracer:
    assert _tracer is not None, "tracing is off"
    return _tracer


def install(provider: Any) -> None:
    """Trace through `provider` (an opentelemetry.sdk.trace.TracerProvider) from now on."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("agora")


def uninstall() -> None:
    """Tracing off again (flushes and shuts down the provider `configure` made)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None and getattr(provider, "_agora_owned", False):
        provider.shutdown()


def configure(endpoint: str, service_name: str, *, sample_ratio: float = 1.0) -> bool:
    """Export spans over OTLP/HTTP to `endpoint` (a collector's base URL, e.g. http://otel:4318);
    no endpoint: tracing stays off. True when tracing is on."""
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name, "service.namespace": "agora"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    provider._agora_owned = True
    install(provider)
    log.info("tracing on", extra={"otlp": url, "service_name": service_name, "sample_ratio": sample_ratio})
    return True


# -- context in and out


def extract(carrier: Mapping[str, str]) -> otel_context.Context:
    """The remote parent a carrier (HTTP headers, gRPC metadata, envelope headers) names, if any."""
    return _propagator.extract(carrier)


def extract_pairs(pairs: Iterable[tuple[str, Any]] | None) -> otel_context.Context | None:
    """From gRPC metadata or ASGI headers: (name, value) pairs, names lowercase, str or bytes."""
    carrier: dict[str, str] = {}
    for key, value in pairs or ():
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if key in TRACE_HEADERS:
            carrier[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return _propagator.extract(carrier) if carrier else None


def inject(span: trace.Span | None = None) -> dict[str, str]:
    """traceparent (and tracestate) naming `span`, or the current span."""
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span) if span is not None else None
    _propagator.inject(carrier, context=ctx)
    return carrier


def traceparent(span: trace.Span) -> str:
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"


# -- spans


def start(name: str, kind: SpanKind, parent: otel_context.Context | None = None,
          attributes: Mapping[str, Any] | None = None) -> trace.Span:
    """A span that is not current yet (see `activate`); parent: the current span unless given."""
    assert _tracer is not None
    return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def activate(span: trace.Span) -> object:
    """Make `span` current for this context; returns the token `deactivate` takes."""
    return otel_context.attach(trace.set_span_in_context(span))


def deactivate(token: object) -> None:
    # A stream handler abandoned by its client is finalised by the garbage collector in another
    # context: there is nothing to restore there (and OpenTelemetry would log an error about it).
    try:
        otel_context._RUNTIME_CONTEXT.detach(token)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        pass


def end(span: trace.Span, error: str | None = None, **attributes: Any) -> None:
    if attributes:
        span.set_attributes(attributes)
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, for log lines; None when there is none."""
    if _tracer is None:
        return None
    c = trace.get_current_span().get_span_context()
    if not c.is_valid:
        return None
    return f"{c.trace_id:032x}", f"{c.span_id:016x}"
