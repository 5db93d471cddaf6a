"""The orders storage port, and the factory that picks its adapter (Cassandra real, SQLite embedded)."""

from __future__ import annotations

from typing import Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.config import Settings
from services.orders.domain import Order, Status


class OrderStore(Protocol):
    async def start(self) -> None:
        """Connect; create tables if missing."""

    async def create(self, order: Order, event: Envelope) -> None:
        """Store a new order (by id, by client, its first history entry) and its event, together."""

    async def get(self, order_id: str) -> Order | None:
        """The order with its full status history."""

    async def list_by_client(self, client_id: str, cursor: str, limit: int) -> tuple[list[Order], str]:
        """Up to `limit` of the client's orders, newest first, from `cursor`; and the next cursor
        ('' at the end)."""

    async def list_all(self, status: Status | None, cursor: str, limit: int) -> tuple[list[Order], str]:
        """Orders in a stable, unspecified order (optionally only those in `status`); and the next cursor."""

    async def transition(self, order: Order, event: Envelope | None, *, expect: Status | None = None) -> bool:
        """Store `order`'s newest status (its last history entry) and its event, together.

        With `expect`, only if the stored status still is `expect` (a compare-and-set: two replicas,
        or a payment outcome racing a cancellation, cannot both move the order); False when not."""

    async def emit(self, event: Envelope) -> None:
        """Queue an event again (recovering one whose write was interrupted; consumers dedupe by id)."""

    async def attach_payment(self, order_id: str, payment_id: str) -> None:
        """Record the order's payment without a status change (a charge that landed after a cancel)."""

    async def pending_due(self, at, limit: int) -> list[Order]:
        """PENDING orders whose payment_due_at is at or before `at`, oldest due first."""

    @property
    def outbox(self):
        """The outbox table the store writes events to (the relay claims from it)."""

    def relay_connection(self):
        """A connection of the relay's own (services.kit.bus.outbox.outbox_relay)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> OrderStore:
    if settings.real:
        from services.orders.stores.cassandra import CassandraOrderStore

        return CassandraOrderStore(settings)
    from services.orders.stores.sqlite import SqliteOrderStore

    return SqliteOrderStore(settings.data_dir / "orders.sqlite3")
