"""The catalog event envelopes: a product created or updated, a product's stock changed."""

from __future__ import annotations

from agora.events.v1 import catalog_pb2 as events

from services.catalog.domain import Product, StockChange
from services.kit.bus import new_envelope
from services.kit.wire import money, timestamp

Reason = events.StockChangeReason


def product_created(product: Product):
    return new_envelope("catalog.product.created", "catalog", product.id, events.ProductCreated(
        product_id=product.id, seller_id=product.seller_id, name=product.name,
        description=product.description, category=product.category, price=money(product.price),
        stock=product.stock, version=product.version, created_at=timestamp(product.created_at)))


def product_updated(current: Product, updated: Product, details: list[str]):
    """`details`: the fields that changed, stock aside (a stock change has its own event)."""
    return new_envelope("catalog.product.updated", "catalog", updated.id, events.ProductUpdated(
        product_id=updated.id, seller_id=updated.seller_id, name=updated.name,
        description=updated.description, category=updated.category, price=money(updated.price),
        previous_price=money(current.price), changed_fields=details, version=updated.version,
        updated_at=timestamp(updated.updated_at)))


def stock_events(changes: list[StockChange], reason: int, order_id: str = "") -> list:
    return [
        new_envelope("catalog.product.stock_changed", "catalog", c.after.id, events.ProductStockChanged(
            product_id=c.after.id, previous_stock=c.before.stock, stock=c.after.stock,
            delta=c.after.stock - c.before.stock, reason=reason, order_id=order_id, version=c.after.version,
            changed_at=timestamp(c.after.updated_at)))
        for c in changes
    ]
