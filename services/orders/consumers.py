"""What orders does when payments' events arrive (PAID, PAYMENT_FAILED, REFUNDED).

Idempotent by the order's status: a change applies only to the status it expects (compare-and-set
in the store), so a redelivered event finds the order already moved and changes nothing.
"""

from __future__ import annotations

import logging

from agora.events.v1 import payments_pb2 as payment_events

from services.kit.bus import unpack
from services.orders import domain
from services.orders.domain import Status
from services.orders.ledger import OrderLedger

log = logging.getLogger("agora.orders.handlers")

GROUP = "orders.payments"
PATTERNS = ["payments.payment.succeeded", "payments.payment.failed", "payments.payment.refunded"]


class PaymentOutcomes:
    def __init__(self, orders: OrderLedger, group: str = GROUP) -> None:
        self.orders = orders
        self.group = group

    async def subscribe(self, bus):
        return await bus.subscribe(self.group, PATTERNS, self.handle)

    async def handle(self, envelope) -> None:
        at, cause = domain.now(), envelope.id
        if envelope.type == "payments.payment.succeeded":
            event = unpack(envelope, payment_events.PaymentSucceeded)
            order = await self.orders.change(
                event.order_id, lambda o: domain.paid(o, event.payment_id, at, cause), cause=cause)
            if order is not None and order.status is Status.CANCELLED and not order.payment_id:
                # Charged after it was cancelled: payments refunds it; the order waits for REFUNDED.
                await self.orders.store.attach_payment(order.id, event.payment_id)
        elif envelope.type == "payments.payment.failed":
            event = unpack(envelope, payment_events.PaymentFailed)
            order = await self.orders.change(
                event.order_id, lambda o: domain.payment_failed(o, event.payment_id, event.reason, at, cause),
                reason=event.reason, cause=cause)
        elif envelope.type == "payments.payment.refunded":
            event = unpack(envelope, payment_events.PaymentRefunded)
            order = await self.orders.change(
                event.order_id, lambda o: domain.refunded(o, event.payment_id, at, cause), cause=cause)
        else:
            return
        if order is None:
            log.warning("%s for unknown order %s; ignored", envelope.type, envelope.key)
