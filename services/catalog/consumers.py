"""What catalog does when orders' events arrive: reserve an order's stock, release it when the order
fails or is cancelled. Idempotent by order id (the reservation document is the natural key).
And ProductChanges: other replicas' product changes, as the store's change stream tells them."""

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
        return await bus.subscribe(GROUP, PATTERNS, self.handle)  # GROUP read now: tests rename it

    async def handle(self, envelope) -> None:
        try:
            if envelope.type == "orders.order.created":
                created = unpack(envelope, order_events.OrderCreated)
                items = [(i.product_id, i.quantity) for i in created.items]
                await self.stock.reserve(created.order_id, items)
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


class ProductChanges:
    """Feeds `observe` the product changes other processes make (MongoDB's change stream; a no-op
    on SQLite). A worker (`start()`/`stop()`), not a bus consumer, so it differs from the template's
    consumers: the server starts it after the store, and the store's `close()` ends the stream."""

    def __init__(self, store, observe) -> None:
        self.store = store  # services.catalog.store.CatalogStore
        self.observe = observe  # (Product) -> None, on the loop

    async def start(self) -> None:
        await self.store.follow(self.observe)

    async def stop(self) -> None:
        pass  # the store stops following when it closes (it closes after every part has stopped)
