"""Payments on PostgreSQL: payments (unique per order: the natural idempotency key) and the outbox,
in the domain's own schema. The SQL is shared with SQLite (sql.py); the dialect is here."""

from __future__ import annotations

import asyncio
from typing import Any

from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import (
    PostgresAdapter,
    PostgresDatabase,
    PostgresTimes,
    PostgresTransactions,
)
from services.kit.telemetry.metrics import timed_operations
from services.payments.domain import Payment
from services.payments.stores.sql import COLUMNS, SqlPaymentStore, schema

SCHEMA = schema(time="TIMESTAMPTZ", false="false") + (
    "CREATE INDEX IF NOT EXISTS payments_by_user ON payments (user_id, created_at DESC, id DESC);\n")


@timed_operations
class PostgresPaymentStore(PostgresAdapter, PostgresTransactions, PostgresTimes, SqlPaymentStore):
    _INSERT_NEW = "INSERT INTO payments ({columns}) VALUES ({values}) ON CONFLICT (order_id) DO NOTHING"

    def __init__(self, url: str, *, schema: str = "payments") -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema)
        self.outbox = PostgresOutbox("payments_outbox")

    def _status_in(self, wanted: list[int]) -> tuple[str, list[Any]]:
        return "status = ANY(%s)", [wanted]

    def _flag_cancel(self, conn: Any, order_id: str) -> Payment | None:
        return self._payment(self._execute(
            conn, f"UPDATE payments SET cancel_requested = true WHERE order_id = %s RETURNING {COLUMNS}",
            (order_id,)).fetchone())

    async def start(self) -> None:
        def create(conn) -> None:
            self._lock_schema(conn, "payments")
            self._execute(conn, SCHEMA)

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)
