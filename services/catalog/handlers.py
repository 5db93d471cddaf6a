"""What catalog does when orders' events arrive: reserve an order's stock, release it when the order
fails or is cancelled. Idempotent by order id (the reservation document is the natural key)."""

from __future__ import annotations

import logging

from agora.events.v1 import orders_pb2 as order_events

from services.kit.bus import unpack
from services.kit.errors import DomainError

log = logging.getLogger("agora.catalog.handlers")

GROUP = "catalog.stock"
PATTERNS = ["orders.order.created", "orders.order.failed", "orders.order.cancelled"]


class StockConsumer:
    def __init__(self, stock) -> None:
        self.stock = stock  # services.catalog.service.Stock

    async def subscribe(self, bus):
        return await bus.subscribe(GROUP, PATTERNS, self.handle)

    async def handle(self, envelope) -> None:
        try:
            if envelope.type == "orders.order.created":
                created = unpack(envelope, order_events.OrderCreated)
                await self.stock.reserve(created.order_id, [(i.product_id, i.quantity) for i in created.items])
            elif envelope.type == "orders.order.failed":
                failed = unpack(envelope, order_events.OrderFailed)
                await self.stock.release(failed.order_id, failed.reason or "order failed")
            elif envelope.type == "orders.order.cancelled":
                cancelled = unpack(envelope, order_events.OrderCancelled)
                await self.stock.release(cancelled.order_id, cancelled.reason or "order cancelled")
        except DomainError as exc:
            # The order service already had this answer synchronously (or the order is over):
            # retrying cannot change it, so record it and move on.
            log.info("%s %s for order %s: %s", envelope.type, type(exc).__name__, envelope.key, exc.message)
