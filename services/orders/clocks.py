"""The sweeper that fails an order whose payment outcome never came (PAYMENT_FAILED, stock released)."""

from __future__ import annotations

import logging

from services.kit.worker import Worker
from services.orders import domain
from services.orders.domain import Status
from services.orders.ledger import OrderLedger

log = logging.getLogger("agora.orders.handlers")

TIMED_OUT = "payment_timed_out"


class PaymentTimeouts:
    """Every `interval` seconds, fails the PENDING orders past payment_due_at (event reason
    "payment_timed_out": catalog releases the stock, payments stops or refunds the charge), in a
    kit Worker between `start()` and `stop()`; a failed sweep is logged and tried again next round."""

    def __init__(self, orders: OrderLedger, *, interval: float = 5.0, batch: int = 200) -> None:
        self.orders, self.interval, self.batch = orders, interval, batch
        self._worker = Worker(self._step, name="orders-payment-timeouts", backoff=interval,
                              max_backoff=interval,
                              on_error=lambda exc, _: log.error("payment timeout sweep failed", exc_info=exc))

    async def sweep(self) -> int:
        failed = 0
        for order in await self.orders.store.pending_due(domain.now(), self.batch):
            after = await self.orders.change(order.id, lambda o: domain.timed_out(o, domain.now()),
                                             reason=TIMED_OUT)
            if (after is not None and after.status is Status.PAYMENT_FAILED
                    and after.last_sequence > order.last_sequence):
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
