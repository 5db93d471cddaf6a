"""What orders does when payments' events arrive (PAID, PAYMENT_FAILED, REFUNDED), and the sweeper
that fails an order whose payment outcome never came (PAYMENT_FAILED, stock released).

Idempotent by the order's status: a change applies only to the status it expects (compare-and-set
in the store), so a redelivered event finds the order already moved and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging

from agora.events.v1 import payments_pb2 as payment_events

from services.kit.bus import unpack
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
    "payment_timed_out": catalog releases the stock, payments stops or refunds the charge)."""

    def __init__(self, orders, *, interval: float = 5.0, batch: int = 200) -> None:
        self.orders, self.interval, self.batch = orders, interval, batch
        self._task: asyncio.Task | None = None

    async def sweep(self) -> int:
        failed = 0
        for order in await self.orders.store.pending_due(domain.now(), self.batch):
            after = await self.orders.change(order.id, lambda o: domain.timed_out(o, domain.now()), reason=TIMED_OUT)
            if after is not None and after.status is Status.PAYMENT_FAILED and after.last_sequence > order.last_sequence:
                failed += 1
        return failed

    async def _run(self) -> None:
        while True:
            try:
                swept = await self.sweep()
                if swept:
                    log.info("failed %d orders whose payment timed out", swept)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a store hiccup: try again next round
                log.exception("payment timeout sweep failed")
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="orders-payment-timeouts")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
