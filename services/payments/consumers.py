"""What payments does when orders' events arrive: charge a new order; stop or refund a cancelled one.

Idempotent by natural key: one payment per order id. The two concerns are separate consumer
groups so a cancellation is not queued behind the charge it must stop (a charge retrying with
back-off keeps its event, and its order's lane, until it has an outcome).
"""

from __future__ import annotations

import logging

from agora.events.v1 import orders_pb2 as order_events

from services.kit.bus import unpack
from services.kit.wire import from_money
from services.payments.charging import Cashier

log = logging.getLogger("agora.payments.handlers")

CHARGE_GROUP = "payments.charge"
CANCEL_GROUP = "payments.cancel"
# An order that timed out waiting for its payment is failed by orders: treat it as a cancellation,
# so a charge that succeeds too late is given back.
TIMED_OUT = "payment_timed_out"


class ChargeConsumer:
    def __init__(self, cashier: Cashier, group: str = CHARGE_GROUP) -> None:
        self.cashier, self.group = cashier, group

    async def subscribe(self, bus):
        return await bus.subscribe(self.group, ["orders.order.created"], self.handle)

    async def handle(self, envelope) -> None:
        created = unpack(envelope, order_events.OrderCreated)
        payment = await self.cashier.charge(created.order_id, created.client_id, created.user_id,
                                            from_money(created.total), created.payment_card_token)
        log.info("order %s: payment %s %s", created.order_id, payment.id, payment.status.name)


class CancelConsumer:
    def __init__(self, cashier: Cashier, group: str = CANCEL_GROUP) -> None:
        self.cashier, self.group = cashier, group

    async def subscribe(self, bus):
        return await bus.subscribe(self.group, ["orders.order.cancelled", "orders.order.failed"],
                                   self.handle)

    async def handle(self, envelope) -> None:
        if envelope.type == "orders.order.cancelled":
            event = unpack(envelope, order_events.OrderCancelled)
            reason = "order cancelled"
        else:
            event = unpack(envelope, order_events.OrderFailed)
            if event.reason != TIMED_OUT:
                return  # failed because its payment failed: nothing to stop
            reason = "order timed out waiting for its payment"
        await self.cashier.cancel(event.order_id, event.client_id, event.user_id, from_money(event.total),
                                  reason)
