"""Orders on the wire: the domain's values as orders protos
(Timestamp and Money from services/kit/wire.py)."""

from __future__ import annotations

from agora.events.v1 import orders_pb2 as events
from agora.orders.v1 import orders_pb2 as pb

from services.kit.wire import money, timestamp
from services.orders.domain import Order, StatusChange


def change_proto(c: StatusChange) -> pb.StatusChange:
    return pb.StatusChange(sequence=c.sequence, status=int(c.status), at=timestamp(c.at), reason=c.reason,
                           event_id=c.event_id)


def to_proto(o: Order) -> pb.Order:
    return pb.Order(
        id=o.id, client_id=o.client_id, status=int(o.status), user_id=o.user_id, payment_id=o.payment_id,
        items=[pb.LineItem(product_id=i.product_id, quantity=i.quantity, unit_price=money(i.unit_price),
                           line_total=money(i.total), product_name=i.product_name, seller_id=i.seller_id)
               for i in o.items],
        total=money(o.total), history=[change_proto(c) for c in o.history],
        payment_due_at=timestamp(o.payment_due_at), created_at=timestamp(o.created_at),
        updated_at=timestamp(o.updated_at),
    )


def watch_response(order: Order, change: StatusChange) -> pb.WatchOrderResponse:
    """One WatchOrder message: a status change and the order as it was right after it."""
    return pb.WatchOrderResponse(sequence=change.sequence, change=change_proto(change), order=to_proto(order))


def event_lines(o: Order) -> list[events.OrderLine]:
    return [events.OrderLine(product_id=i.product_id, quantity=i.quantity, unit_price=money(i.unit_price),
                             line_total=money(i.total), product_name=i.product_name, seller_id=i.seller_id)
            for i in o.items]
