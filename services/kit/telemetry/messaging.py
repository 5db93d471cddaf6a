"""A consumer handling one event: a CONSUMER span that is a child of the publish span named in the
envelope's headers, the consumer's lag, and the outcome counters. Both bus adapters call `consume`."""

from __future__ import annotations

import asyncio
import time

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.telemetry import metrics, tracing


async def consume(group: str, envelope: Envelope, handler, attempt: int = 1) -> None:
    """Run `handler(envelope)` for `group`; raises what the handler raises."""
    ts = envelope.occurred_at
    started_wall = time.time()
    if ts.seconds:
        metrics.bus_lag(group).observe(max(started_wall - ts.seconds - ts.nanos * 1e-9, 0.0))
    started = time.perf_counter()
    span = token = None
    if tracing.enabled():
        parent = tracing.extract(envelope.headers) if "traceparent" in envelope.headers else None
        span = tracing.start(f"{group} process {envelope.type}", tracing.SpanKind.CONSUMER, parent, {
            "messaging.system": "agora", "messaging.operation": "process",
            "messaging.destination.name": envelope.type, "messaging.consumer.group.name": group,
            "messaging.message.id": envelope.id, "messaging.message.conversation_id": envelope.key,
            "messaging.delivery.attempt": attempt,
        })
        token = tracing.activate(span)
    outcome, error = "failed", None
    try:
        await handler(envelope)
        outcome = "ok"
    except asyncio.CancelledError:
        outcome, error = "", "cancelled"
        raise
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if outcome:
            metrics.bus_consumed(group, envelope.type, outcome).inc()
            metrics.bus_handle_duration(group).observe(time.perf_counter() - started)
        if span is not None:
            tracing.deactivate(token)
            tracing.end(span, error)


def publish_headers(type: str, id: str, key: str, source: str) -> dict[str, str]:
    """A PRODUCER span for an event being created now (child of the current span), ended at once;
    its context goes into the envelope's headers and travels with it, through an outbox too."""
    span = tracing.start(f"publish {type}", tracing.SpanKind.PRODUCER, None, {
        "messaging.system": "agora", "messaging.operation": "publish", "messaging.destination.name": type,
        "messaging.message.id": id, "messaging.message.conversation_id": key, "agora.event.source": source,
    })
    headers = tracing.inject(span)
    span.end()
    return headers
