"""Payments on SQLite (embedded): payments (unique per order) and the outbox in one file. The SQL is
shared with PostgreSQL (sql.py); the dialect is here: times as fixed-width text, so text order is
time order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase, SqliteTimes, SqliteTransactions
from services.kit.telemetry.metrics import timed_operations
from services.payments.domain import Payment
from services.payments.stores.sql import SqlPaymentStore, schema

_SCHEMA = schema(time="TEXT", false="0")


@timed_operations
class SqlitePaymentStore(SqliteAdapter, SqliteTransactions, SqliteTimes, SqlPaymentStore):
    _INSERT_NEW = "INSERT OR IGNORE INTO payments ({columns}) VALUES ({values})"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("payments_outbox")

    def _status_in(self, wanted: list[int]) -> tuple[str, list[Any]]:
        return f"status IN ({', '.join(['%s'] * len(wanted))})", wanted

    def _flag_cancel(self, conn: sqlite3.Connection, order_id: str) -> Payment | None:
        self._execute(conn, "UPDATE payments SET cancel_requested = 1 WHERE order_id = %s", (order_id,))
        return self._by_order(conn, order_id)

    async def start(self) -> None:
        await self._create_tables(_SCHEMA)
