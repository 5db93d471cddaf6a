"""What orders does when payments' events arrive (PAID, PAYMENT_FAILED, REFUNDED), and the sweeper
that fails an order whose payment outcome never came (PAYMENT_FAILED, stock released).

Idempotent by the order's status: a change applies only to the status it expects (compare-and-set
in the store), so a redelivered event finds the order already moved and changes nothing.
"""

from __future__ import annotations

import logging

from agora.events.v1 import payments_pb2 as payment_events

from services.kit.bus import unpack
from services.kit.worker import Worker
from services.orders import domain
from services.orders.domain import Status

log = logging.getLogger("agora.orders.handlers")

GROUP = "orders.payments"
PATTERNS = ["payments.payment.succeeded", "payments.payment.failed", "payments.payment.refunded"]
TIMED_OUT = "payment_timed_out"


class PaymentOutcomes:
    def __init__(self, orders, group: str = GROUP) -> None:
        self.orders = orders  # services.orders.service.OrderService
        self.group = group

    async def subscribe(self, bus):
        return await bus.subscribe(self.group, PATTERNS, self.handle)

    async def handle(self, envelope) -> None:
        at, cause = domain.now(), envelope.id
        if envelope.type == "payments.payment.succeeded":
            event = unpack(envelope, payment_events.PaymentSucceeded)
            order = await self.orders.change(event.order_id, lambda o: domain.paid(o, event.payment_id, at, cause),
                                             cause=cause)
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
            order = await self.orders.change(event.order_id,
                                             lambda o: domain.refunded(o, event.payment_id, at, cause), cause=cause)
        else:
            return
        if order is None:
            log.warning("%s for unknown order %s; ignored", envelope.type, envelope.key)


class PaymentTimeouts:
    """Every `interval` seconds, fails the PENDING orders past payment_due_at (event reason
    "payment_timed_out": catalog releases the stock, payments stops or refunds the charge), in a
    kit Worker between `start()` and `stop()`; a failed sweep is logged and tried again next round."""

    def __init__(self, orders, *, interval: float = 5.0, batch: int = 200) -> None:
        self.orders, self.interval, self.batch = orders, interval, batch
        self._worker = Worker(self._step, name="orders-payment-timeouts", backoff=interval, max_backoff=interval,
                              on_error=lambda exc, _: log.error("payment timeout sweep failed", exc_info=exc))

    async def sweep(self) -> int:
        failed = 0
        for order in await self.orders.store.pending_due(domain.now(), self.batch):
            after = await self.orders.change(order.id, lambda o: domain.timed_out(o, domain.now()), reason=TIMED_OUT)
            if after is not None and after.status is Status.PAYMENT_FAILED and after.last_sequence > order.last_sequence:
                failed += 1
        return failed

    async def _step(self) -> float:
        swept = await self.sweep()
        if swept:
            log.info("failed %d orders whose payment timed out", swept)
        return self.interval

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
