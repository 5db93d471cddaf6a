"""Notifications on PostgreSQL: notifications (unique per event, channel and recipient), their change
log and known contacts, in the domain's own schema. Dispatchers on several replicas share the due
rows through leases taken with FOR UPDATE SKIP LOCKED. The SQL is shared with SQLite (sql.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.kit.stores.postgres import (
    PostgresAdapter,
    PostgresDatabase,
    PostgresTimes,
    PostgresTransactions,
)
from services.kit.telemetry.metrics import timed_operations
from services.notifications.domain import Notification
from services.notifications.stores.sql import SqlNotificationStore, schema

SCHEMA = schema(time="TIMESTAMPTZ", seq="BIGSERIAL PRIMARY KEY", indexes="""\
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at)
    WHERE status IN (1, 4);
CREATE INDEX IF NOT EXISTS notifications_by_order ON notifications (order_id);""")


@timed_operations
class PostgresNotificationStore(PostgresAdapter, PostgresTransactions, PostgresTimes,
                                SqlNotificationStore):
    # No outbox (notifications publish nothing): the kit's relay_connection goes unused.
    _INSERT_NEW = ("INSERT INTO notifications ({columns}) VALUES ({values})"
                   " ON CONFLICT (event_id, channel, recipient) DO NOTHING")

    def __init__(self, url: str, *, schema: str = "notifications") -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema)

    def _log(self, conn: Any, n: Notification) -> int:
        return self._execute(conn, "INSERT INTO notification_changes (notification_id, snapshot)"
                                   " VALUES (%s, %s) RETURNING seq", (n.id, n.to_json())).fetchone()[0]

    def _lease(self, conn: Any, at: datetime, limit: int, until: datetime) -> list[Any]:
        rows = self._due(conn, at, limit, " FOR UPDATE SKIP LOCKED")
        if rows:
            self._execute(conn, "UPDATE notifications SET lease_until = %s WHERE id = ANY(%s)",
                          (until, [r[0] for r in rows]))
        return rows

    async def start(self) -> None:
        def create(conn) -> None:
            self._lock_schema(conn, "notifications")
            self._execute(conn, SCHEMA)

        await self.db.transaction(create)
