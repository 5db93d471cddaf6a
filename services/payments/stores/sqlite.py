"""Payments on SQLite (embedded): payments (unique per order) and the outbox in one file. The SQL is
shared with PostgreSQL (sql.py); the dialect is here: times as fixed-width text, so text order is
time order."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.payments.domain import Payment
from services.payments.stores.sql import SqlPaymentStore, schema

_SCHEMA = schema(time="TEXT", false="0")


def _text(at: datetime | None) -> str | None:
    # Fixed width, so text order is time order.
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if at is not None else None


@timed_operations
class SqlitePaymentStore(SqlPaymentStore):
    _INSERT_NEW = "INSERT OR IGNORE INTO payments ({columns}) VALUES ({values})"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("payments_outbox")

    async def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.transaction(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.run(fn)

    def _execute(self, conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return conn.execute(sql.replace("%s", "?"), tuple(args))

    def _db_time(self, at: datetime | None) -> str | None:
        return _text(at)

    def _py_time(self, value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    def _cursor_time(self, at: datetime) -> str:
        return _text(at)

    def _status_in(self, wanted: list[int]) -> tuple[str, list[Any]]:
        return f"status IN ({', '.join(['%s'] * len(wanted))})", wanted

    def _older_than(self, created: str, payment_id: str) -> tuple[str, list[Any]]:
        return "(created_at < %s OR (created_at = %s AND id < %s))", [created, created, payment_id]

    def _flag_cancel(self, conn: sqlite3.Connection, order_id: str) -> Payment | None:
        self._execute(conn, "UPDATE payments SET cancel_requested = 1 WHERE order_id = %s", (order_id,))
        return self._by_order(conn, order_id)

    async def start(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.executescript(_SCHEMA)
            self.outbox.create_schema(conn)

        await self.db.run(create)

    def relay_connection(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, check_same_thread=False)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
