"""The customers event envelopes: a client or a seller created."""

from __future__ import annotations

from agora.events.v1 import customers_pb2 as events

from services.customers.domain import Kind, Party
from services.kit.bus import new_envelope
from services.kit.wire import timestamp


def created_event(p: Party):
    cls = events.ClientCreated if p.kind is Kind.CLIENT else events.SellerCreated
    payload = cls(name=p.name, email=p.email, phone=p.phone, user_id=p.user_id,
                  created_at=timestamp(p.created_at))
    setattr(payload, f"{p.kind.value}_id", p.id)
    return new_envelope(f"customers.{p.kind.value}.created", "customers", p.id, payload)
