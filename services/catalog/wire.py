"""Catalog on the wire: products and reservations as catalog protos, and back
(Timestamp and Money from services/kit/wire.py)."""

from __future__ import annotations

from agora.catalog.v1 import catalog_pb2 as pb
from google.protobuf import json_format, struct_pb2

from services.catalog.domain import Product, Reservation, ReservationState
from services.kit.values import Money
from services.kit.wire import money, timestamp


def to_proto(p: Product) -> pb.Product:
    attributes = struct_pb2.Struct()
    attributes.update(p.attributes)
    return pb.Product(id=p.id, seller_id=p.seller_id, name=p.name, description=p.description,
                      category=p.category, price=money(p.price), stock=p.stock, attributes=attributes,
                      version=p.version, created_at=timestamp(p.created_at),
                      updated_at=timestamp(p.updated_at))


def from_proto(m: pb.Product) -> Product:
    price = Money(m.price.currency_code.strip(), m.price.amount_minor) if m.HasField("price") else None
    return Product(id="", seller_id=m.seller_id, name=m.name, description=m.description, category=m.category,
                   price=price, stock=m.stock, attributes=json_format.MessageToDict(m.attributes))


def reservation_proto(r: Reservation) -> pb.Reservation:
    reserved = r.state is ReservationState.RESERVED
    out = pb.Reservation(
        order_id=r.order_id, items=[pb.ReservationItem(product_id=p, quantity=q) for p, q in r.items],
        state=pb.RESERVATION_STATE_RESERVED if reserved else pb.RESERVATION_STATE_RELEASED,
        release_reason=r.release_reason,
    )
    if r.reserved_at:
        out.reserved_at.CopyFrom(timestamp(r.reserved_at))
    if r.released_at:
        out.released_at.CopyFrom(timestamp(r.released_at))
    return out


def snapshot(p: Product) -> pb.WatchProductResponse:
    return pb.WatchProductResponse(sequence=p.version, product_id=p.id, price=money(p.price), stock=p.stock,
                                   updated_at=timestamp(p.updated_at))
