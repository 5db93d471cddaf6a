"""Audit's consumer of every event (`#`): each envelope becomes one recorded event, once (its id is
the key)."""

from __future__ import annotations

import importlib
import logging
import pkgutil

import agora.events.v1 as event_protos
from google.protobuf import json_format, symbol_database

from services.audit.domain import AuditEvent, redact, to_ms
from services.kit.wire import to_datetime

log = logging.getLogger("agora.audit.handlers")

GROUP = "audit"
PATTERNS = ["#"]

# Every payload message of agora.events.v1, so any envelope's Any can be decoded by name, and the
# payloads declared beside their RPC: `polls.votes.cast` carries agora.polls.v1.VotesCast.
for _module in pkgutil.iter_modules(event_protos.__path__):
    if _module.name.endswith("_pb2"):
        importlib.import_module(f"{event_protos.__name__}.{_module.name}")
importlib.import_module("agora.polls.v1.polls_pb2")


def from_envelope(envelope) -> AuditEvent:
    type_name = envelope.payload.TypeName()
    payload: dict = {}
    if type_name:
        try:
            message = symbol_database.Default().GetSymbol(type_name)()
            envelope.payload.Unpack(message)
            payload = redact(json_format.MessageToDict(message))
        except KeyError:
            payload = {"undecoded": f"{len(envelope.payload.value)} bytes of {type_name}"}
    occurred = to_datetime(envelope.occurred_at)
    return AuditEvent(id=envelope.id, type=envelope.type, source=envelope.source, key=envelope.key,
                      occurred_at=to_ms(occurred), payload=payload, payload_type=type_name,
                      headers=dict(envelope.headers))


class EventRecorder:
    def __init__(self, record) -> None:
        self.record = record  # async (AuditEvent) -> None: the feed's store-and-stream path (feed.py)

    async def subscribe(self, bus):
        return await bus.subscribe(GROUP, PATTERNS, self.handle)

    async def handle(self, envelope) -> None:
        await self.record(from_envelope(envelope))
