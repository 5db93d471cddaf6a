"""Building and opening event envelopes: id, type (the routing key), key, trace headers, typed payload."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TypeVar

from agora.events.v1.envelope_pb2 import Envelope
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit.telemetry import messaging, tracing

M = TypeVar("M", bound=Message)

# Headers that follow an event across services (W3C trace context); everything else stays local.
TRACE_HEADERS = ("traceparent", "tracestate")


def new_envelope(
    type: str,
    source: str,
    key: str,
    payload: Message,
    headers: Mapping[str, str] | None = None,
    *,
    id: str | None = None,
    occurred_at: Timestamp | None = None,
) -> Envelope:
    """An envelope for `payload`, stamped now with a fresh id unless given (an outbox row keeps its id).

    While tracing is on, making an event is its publish span (a child of the current span, e.g. the
    RPC that changed the state): the span's context goes into `headers`, so it travels with the
    envelope through an outbox, and each consumer's span is its child."""
    id = id or str(uuid.uuid4())
    headers = dict(headers or {})
    if tracing.enabled() and "traceparent" not in headers:
        headers.update(messaging.publish_headers(type, id, key, source))
    envelope = Envelope(id=id, type=type, source=source, key=key, headers=headers)
    if occurred_at is not None:
        envelope.occurred_at.CopyFrom(occurred_at)
    else:
        envelope.occurred_at.GetCurrentTime()
    envelope.payload.Pack(payload)
    return envelope


def unpack(envelope: Envelope, message_type: type[M]) -> M:
    """The payload as `message_type`; ValueError when the envelope carries something else."""
    message = message_type()
    if not envelope.payload.Unpack(message):
        raise ValueError(
            f"event {envelope.id} ({envelope.type}) carries {envelope.payload.TypeName()}, "
            f"not {message_type.DESCRIPTOR.full_name}"
        )
    return message


def routing_key(envelope: Envelope) -> str:
    """The routing key on the topic exchange is the event type."""
    return envelope.type


def trace_headers(envelope: Envelope) -> dict[str, str]:
    """The trace context the envelope carries, to copy onto the transport and into the next span."""
    return {name: envelope.headers[name] for name in TRACE_HEADERS if name in envelope.headers}


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: words split on dots, `*` is exactly one word, `#` is zero or more."""
    want, have = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(have)
        if want[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(have) + 1))
        if j == len(have):
            return False
        return (want[i] == "*" or want[i] == have[j]) and match(i + 1, j + 1)

    return match(0, 0)
