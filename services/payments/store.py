"""The payments storage port, and the factory that picks its adapter (PostgreSQL real, SQLite embedded)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.config import Settings
from services.payments.domain import Payment, PaymentFilter, Status


class PaymentStore(Protocol):
    outbox: Any  # the bus outbox table the relay drains (services.kit.bus.outbox.Outbox)

    async def start(self) -> None:
        """Create tables if missing."""

    async def open(self, payment: Payment) -> tuple[Payment, bool]:
        """Store `payment` unless its order already has one; (the order's payment, created now?).
        (Opens a payment, not the store; the name is a metrics label: PostgresPaymentStore.open.)"""

    async def save(self, payment: Payment, expect: Iterable[Status], event: Envelope | None = None) -> bool:
        """Write `payment`'s state (not its cancel flag) if the stored status is one of `expect`,
        with `event` in the same transaction; False (nothing written) when the status differed."""

    async def request_cancel(self, order_id: str) -> Payment | None:
        """Flag the order's payment so it is not charged (or is refunded); None when it has none."""

    async def get(self, payment_id: str) -> Payment | None: ...

    async def get_by_order(self, order_id: str) -> Payment | None: ...

    async def list(self, filter: PaymentFilter, cursor: str, limit: int) -> tuple[list[Payment], str]:
        """Newest first from `cursor`; and the next cursor ('' at the end)."""

    def relay_connection(self) -> Any:
        """A fresh connection for the outbox relay (it keeps its own)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings, *, schema: str = "payments") -> PaymentStore:
    """PostgreSQL (in `schema`) for real backends, a SQLite file under data_dir otherwise (not started
    yet: the server starts it)."""
    if settings.real:
        from services.payments.stores.postgres import PostgresPaymentStore

        return PostgresPaymentStore(settings.postgres_url, schema=schema)
    from services.payments.stores.sqlite import SqlitePaymentStore

    return SqlitePaymentStore(settings.data_dir / "payments.sqlite3")
