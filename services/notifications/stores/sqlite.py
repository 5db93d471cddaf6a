"""Notifications on SQLite (embedded): notifications, their change log and known contacts in one file.
The SQL is shared with PostgreSQL (sql.py); the dialect is here: times as fixed-width text (text order
is time order), and no row locks (one process, BEGIN IMMEDIATE serialises writers)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from services.kit.stores.sqlite import (
    SqliteAdapter,
    SqliteDatabase,
    SqliteTimes,
    SqliteTransactions,
    fixed_width_time,
)
from services.kit.telemetry.metrics import timed_operations
from services.notifications.domain import Notification
from services.notifications.stores.sql import SqlNotificationStore, schema

_SCHEMA = schema(time="TEXT", seq="INTEGER PRIMARY KEY AUTOINCREMENT", indexes="""\
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at);""")


@timed_operations
class SqliteNotificationStore(SqliteAdapter, SqliteTransactions, SqliteTimes, SqlNotificationStore):
    # No outbox (notifications publish nothing): the kit's relay_connection goes unused.
    _INSERT_NEW = "INSERT OR IGNORE INTO notifications ({columns}) VALUES ({values})"

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path)

    def _log(self, conn: sqlite3.Connection, n: Notification) -> int:
        return self._execute(conn, "INSERT INTO notification_changes (notification_id, snapshot)"
                                   " VALUES (%s, %s)", (n.id, n.to_json())).lastrowid

    def _lease(self, conn: sqlite3.Connection, at: datetime, limit: int, until: datetime) -> list[Any]:
        rows = self._due(conn, at, limit, "")
        conn.executemany("UPDATE notifications SET lease_until = ? WHERE id = ?",
                         [(fixed_width_time(until), r[0]) for r in rows])
        return rows

    async def start(self) -> None:
        await self.db.run(lambda conn: conn.executescript(_SCHEMA))
