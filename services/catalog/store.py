"""The catalog storage port, and the factory that picks its adapter (MongoDB real, SQLite embedded).

Stock changes happen inside the store's transaction (that is what makes them atomic); the rules
they follow are the domain's, and the events they publish are made by the `events_for` callback
the service passes in, and written to the outbox in that same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.catalog.domain import Product, Reservation, StockChange
from services.kit.config import Settings

EventsFor = Callable[[list[StockChange]], list[Envelope]]
OnChange = Callable[[Product], None]


class CatalogStore(Protocol):
    async def start(self) -> None:
        """Connect; create collections/tables and indexes if missing."""

    async def create(self, product: Product, event: Envelope) -> Product: ...

    async def get(self, product_id: str) -> Product | None: ...

    async def replace(self, product: Product, expected_version: int, events: list[Envelope]) -> None:
        """Store `product` if the stored version is still `expected_version` (else VersionMismatch;
        ProductMissing if it is gone)."""

    async def list(self, seller_id: str, category: str, query: str, offset: int, limit: int) -> list[Product]:
        """Newest first (by relevance when `query` is set: any of its words in name, description,
        category)."""

    async def adjust(self, product_id: str, delta: int, request_id: str, reason: str, at,
                     events_for: EventsFor) -> Product:
        """Add `delta` to stock atomically (StockShort if it would go negative, ProductMissing);
        a repeated `request_id` changes nothing and answers the product as it is."""

    async def reserve(self, order_id: str, items: tuple[tuple[str, int], ...], at,
                      events_for: EventsFor) -> Reservation:
        """Take every item's quantity out of stock, or none (StockShort, ProductMissing);
        idempotent by order id (ReservationConflict for other items, ReservationReleased)."""

    async def release(self, order_id: str, reason: str, at, events_for: EventsFor) -> Reservation:
        """Put a reservation's units back (once); record a release for an order with none."""

    async def follow(self, on_change: OnChange) -> None:
        """Call `on_change` (on the loop) for product changes made by other processes, if the backend
        can tell (MongoDB change streams); a no-op otherwise."""

    @property
    def outbox(self):
        """The outbox the store writes events to (the relay claims from it)."""

    def relay_connection(self):
        """A connection of the relay's own (services.kit.bus.outbox.outbox_relay)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> CatalogStore:
    if settings.real:
        from services.catalog.stores.mongo import MongoCatalogStore

        return MongoCatalogStore(settings.mongo_url, settings.mongo_db)
    from services.catalog.stores.sqlite import SqliteCatalogStore

    return SqliteCatalogStore(settings.data_dir / "catalog.sqlite3")
