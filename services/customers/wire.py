"""Customers on the wire: clients and sellers as customers protos, and back
(Timestamp from services/kit/wire.py)."""

from __future__ import annotations

from agora.customers.v1 import customers_pb2 as pb

from services.customers.domain import Address, Kind, Party
from services.kit.wire import timestamp

_MESSAGE = {Kind.CLIENT: pb.Client, Kind.SELLER: pb.Seller}


def to_proto(p: Party):
    message = _MESSAGE[p.kind](
        id=p.id, name=p.name, email=p.email, phone=p.phone, address=pb.Address(**p.address.as_dict()),
        user_id=p.user_id, created_at=timestamp(p.created_at), updated_at=timestamp(p.updated_at),
    )
    if p.kind is Kind.SELLER:
        message.description = p.description
    return message


def from_proto(kind: Kind, message) -> Party:
    a = message.address
    return Party(
        kind=kind, id="", name=message.name, email=message.email, phone=message.phone,
        address=Address(a.line1, a.line2, a.city, a.region, a.postal_code, a.country_code),
        description=getattr(message, "description", ""),
    )
