"""Audit on the wire: the domain's AuditEvent as the API's message (Timestamps from the kit)."""

from __future__ import annotations

from agora.audit.v1 import audit_pb2 as pb
from google.protobuf import struct_pb2

from services.audit.domain import AuditEvent
from services.kit.wire import timestamp


def event(e: AuditEvent) -> pb.AuditEvent:
    payload = struct_pb2.Struct()
    payload.update(e.payload)
    return pb.AuditEvent(id=e.id, type=e.type, source=e.source, key=e.key,
                         occurred_at=timestamp(e.occurred_at), recorded_at=timestamp(e.recorded_at),
                         payload=payload, payload_type=e.payload_type, headers=e.headers, sequence=e.sequence)
