"""How an Envelope travels as an AMQP message: its properties and the bus's own headers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agora.events.v1.envelope_pb2 import Envelope
from google.protobuf.message import DecodeError
from pika.spec import BasicProperties

from services.kit.bus.envelopes import trace_headers

CONTENT_TYPE = "application/x-protobuf; proto=agora.events.v1.Envelope"
ATTEMPT = "x-agora-attempt"  # the attempt a delivery is (absent = 1)
ERROR = "x-agora-error"  # why the last attempt failed (on dead letters)
PERSISTENT = 2
# What the bus and the broker's dead-lettering add to a message on its way to the dead letters.
_DEATH_HEADERS = frozenset({ATTEMPT, ERROR, "x-death", "x-first-death-exchange", "x-first-death-queue",
                            "x-first-death-reason"})


def properties(envelope: Envelope) -> BasicProperties:
    """A freshly published event's properties."""
    headers = trace_headers(envelope) or None
    return BasicProperties(
        delivery_mode=PERSISTENT, content_type=CONTENT_TYPE, message_id=envelope.id, type=envelope.type,
        headers=headers,
    )


def resent(old: BasicProperties, headers: Mapping[str, Any]) -> BasicProperties:
    """A delivery's properties for its move to a retry queue or the dead letters, with new headers."""
    return BasicProperties(
        delivery_mode=PERSISTENT, content_type=old.content_type, message_id=old.message_id,
        type=old.type, headers=dict(headers),
    )


def decode(body: bytes) -> Envelope | None:
    """The Envelope a message carries; None when the body is not one."""
    try:
        return Envelope.FromString(body)
    except DecodeError:
        return None


def attempt(properties: BasicProperties) -> int:
    return int((properties.headers or {}).get(ATTEMPT, 1))


def error(properties: BasicProperties) -> str | None:
    """Why the last attempt failed, as a handler said it; None when the broker dead-lettered it."""
    value = (properties.headers or {}).get(ERROR)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def without_death(headers: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The headers a replayed dead letter goes back with: those it was first published with."""
    kept = {k: v for k, v in (headers or {}).items() if k not in _DEATH_HEADERS}
    return kept or None
