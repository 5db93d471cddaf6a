"""The orders event envelopes: an order placed, paid, failed, cancelled (built here, in one place)."""

from __future__ import annotations

from agora.events.v1 import orders_pb2 as events

from services.kit.bus import new_envelope
from services.kit.wire import money, timestamp
from services.orders import domain
from services.orders.domain import Order, Status
from services.orders.wire import event_lines


def created_event(o: Order, card_token: str):
    return new_envelope("orders.order.created", "orders", o.id, events.OrderCreated(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, items=event_lines(o), total=money(o.total),
        payment_card_token=card_token or "tok_ok", payment_due_at=timestamp(o.payment_due_at),
        created_at=timestamp(o.created_at)), occurred_at=timestamp(o.created_at))


def cancelled_event(o: Order, was_paid: bool):
    change = o.history[-1]
    return new_envelope("orders.order.cancelled", "orders", o.id, events.OrderCancelled(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id, was_paid=was_paid,
        reason=change.reason, items=event_lines(o), total=money(o.total), cancelled_at=timestamp(change.at)),
        occurred_at=timestamp(change.at), id=domain.transition_event_id(o))


def paid_event(o: Order):
    change = o.history[-1]
    return new_envelope("orders.order.paid", "orders", o.id, events.OrderPaid(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id,
        amount=money(o.total), paid_at=timestamp(change.at)),
        occurred_at=timestamp(change.at), id=domain.transition_event_id(o))


def failed_event(o: Order, reason: str):
    change = o.history[-1]
    return new_envelope("orders.order.failed", "orders", o.id, events.OrderFailed(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id, reason=reason,
        items=event_lines(o), total=money(o.total), failed_at=timestamp(change.at)),
        occurred_at=timestamp(change.at), id=domain.transition_event_id(o))


def event_for(before: Order, after: Order, reason: str = ""):
    """The event a status change publishes (None for REFUNDED: payments already announced it)."""
    if after.status is Status.PAID:
        return paid_event(after)
    if after.status is Status.PAYMENT_FAILED:
        return failed_event(after, reason or after.history[-1].reason)
    if after.status is Status.CANCELLED:
        return cancelled_event(after, before.status is Status.PAID)
    return None
