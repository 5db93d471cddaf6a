"""The notifications SQL both adapters share: the tables, the columns, the reads and the writes.

Each adapter supplies its dialect: `_transaction(fn)` and `_read(fn)` (fn(conn) off the event loop),
`_execute(conn, sql, args)` (a DB-API cursor; SQL here is written with %s placeholders), how a time
is kept (`_db_time` / `_py_time` / `_cursor_time`: TIMESTAMPTZ on PostgreSQL, fixed-width text on
SQLite), and what differs: `_INSERT_NEW` (a second notification of an event, channel and recipient
is ignored), `_log` (the change sequence), `_lease` (FOR UPDATE SKIP LOCKED on PostgreSQL, so
dispatchers on several replicas share the due rows) and `_older_than` (the page cursor).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from services.kit.stores.sql import SqlTimes
from services.kit.telemetry.metrics import timed_operations
from services.notifications.domain import Channel, Notification, NotificationFilter, Status


def schema(*, time: str, seq: str, indexes: str) -> str:
    """The tables; `time` is the dialect's time column type, `seq` its change-log key, `indexes` its
    indexes beside the newest-first one. (On SQLite SMALLINT has INTEGER affinity.)"""
    return f"""
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel SMALLINT NOT NULL,
    template TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status SMALLINT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    order_id TEXT NOT NULL,
    auction_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at {time} NOT NULL,
    updated_at {time} NOT NULL,
    sent_at {time},
    next_attempt_at {time},
    lease_until {time},
    UNIQUE (event_id, channel, recipient)
);
CREATE INDEX IF NOT EXISTS notifications_newest ON notifications (created_at DESC, id DESC);
{indexes}
CREATE TABLE IF NOT EXISTS notification_changes (
    seq {seq},
    notification_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (user_id TEXT PRIMARY KEY, email TEXT NOT NULL);
"""


COLUMNS = ("id, event_id, event_type, recipient, channel, template, subject, body, status, attempts,"
           " last_error, order_id, auction_id, user_id, created_at, updated_at, sent_at, next_attempt_at")
_VALUES = ", ".join(["%s"] * len(COLUMNS.split(",")))


@timed_operations
class SqlNotificationStore(SqlTimes):
    _INSERT_NEW: str  # INSERT ... ({columns}) VALUES ({values}) that does nothing on a duplicate

    @abc.abstractmethod
    def _log(self, conn: Any, n: Notification) -> int:
        """Append `n` to the change log; its sequence."""

    @abc.abstractmethod
    def _lease(self, conn: Any, at: datetime, limit: int, until: datetime) -> list[Any]:
        """The due rows (QUEUED, or RETRYING and due, not leased), leased until `until`."""

    def _row(self, n: Notification) -> tuple:
        t = self._db_time
        return (n.id, n.event_id, n.event_type, n.recipient, int(n.channel), n.template, n.subject, n.body,
                int(n.status), n.attempts, n.last_error, n.order_id, n.auction_id, n.user_id, t(n.created_at),
                t(n.updated_at), t(n.sent_at), t(n.next_attempt_at))

    def _notification(self, row) -> Notification | None:
        if row is None:
            return None
        r, t = tuple(row), self._py_time
        return Notification(id=r[0], event_id=r[1], event_type=r[2], recipient=r[3], channel=Channel(r[4]),
                            template=r[5], subject=r[6], body=r[7], status=Status(r[8]), attempts=r[9],
                            last_error=r[10], order_id=r[11], auction_id=r[12], user_id=r[13],
                            created_at=t(r[14]), updated_at=t(r[15]), sent_at=t(r[16]),
                            next_attempt_at=t(r[17]))

    def _due(self, conn: Any, at: datetime, limit: int, lock: str) -> list[Any]:
        """The due rows, oldest first; `lock` ends the statement (the dialect's row lock, or '')."""
        return self._execute(
            conn, f"SELECT {COLUMNS} FROM notifications"
                  " WHERE (status = %s OR (status = %s AND next_attempt_at <= %s))"
                  f" AND (lease_until IS NULL OR lease_until < %s) ORDER BY created_at LIMIT %s{lock}",
            (int(Status.QUEUED), int(Status.RETRYING), self._db_time(at), self._db_time(at),
             limit)).fetchall()

    async def create(self, notifications: Sequence[Notification]) -> list[tuple[int, Notification]]:
        def write(conn):
            out = []
            for n in notifications:
                cur = self._execute(conn, self._INSERT_NEW.format(columns=COLUMNS, values=_VALUES),
                                    self._row(n))
                if cur.rowcount == 1:
                    out.append((self._log(conn, n), n))
            return out

        return await self._transaction(write)

    async def claim_due(self, at: datetime, limit: int, lease_seconds: float) -> list[Notification]:
        def write(conn):
            return [self._notification(r) for r in self._lease(conn, at, limit,
                                                                at + timedelta(seconds=lease_seconds))]

        return await self._transaction(write)

    async def record(self, n: Notification) -> int:
        def write(conn) -> int:
            t = self._db_time
            self._execute(conn, "UPDATE notifications SET status = %s, attempts = %s, last_error = %s,"
                                " updated_at = %s, sent_at = %s, next_attempt_at = %s, lease_until = NULL"
                                " WHERE id = %s",
                          (int(n.status), n.attempts, n.last_error, t(n.updated_at), t(n.sent_at),
                           t(n.next_attempt_at), n.id))
            return self._log(conn, n)

        return await self._transaction(write)

    async def get(self, notification_id: str) -> Notification | None:
        return await self._read(lambda conn: self._notification(self._execute(
            conn, f"SELECT {COLUMNS} FROM notifications WHERE id = %s", (notification_id,)).fetchone()))

    async def list(self, filter: NotificationFilter, cursor: str,
                   limit: int) -> tuple[list[Notification], str]:
        where, args = ["1 = 1"], []
        for column, value in (("recipient", filter.recipient), ("order_id", filter.order_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        for column, value in (("channel", filter.channel), ("status", filter.status)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(int(value))
        return await self._newest_first(f"SELECT {COLUMNS} FROM notifications", where, args, cursor, limit,
                                        self._notification)

    async def changes(self, after: int, upto: int, limit: int) -> list[tuple[int, Notification]]:
        rows = await self._read(lambda conn: self._execute(
            conn, "SELECT seq, snapshot FROM notification_changes WHERE seq > %s AND seq <= %s"
                  " ORDER BY seq LIMIT %s", (after, upto, limit)).fetchall())
        return [(seq, Notification.from_json(snapshot)) for seq, snapshot in rows]

    async def last_sequence(self) -> int:
        return await self._read(lambda conn: self._execute(
            conn, "SELECT coalesce(max(seq), 0) FROM notification_changes").fetchone()[0])

    async def remember_contact(self, user_id: str, email: str) -> None:
        await self._transaction(lambda conn: self._execute(
            conn, "INSERT INTO contacts (user_id, email) VALUES (%s, %s)"
                  " ON CONFLICT (user_id) DO UPDATE SET email = %s", (user_id, email, email)))

    async def contact(self, user_id: str) -> str | None:
        row = await self._read(lambda conn: self._execute(
            conn, "SELECT email FROM contacts WHERE user_id = %s", (user_id,)).fetchone())
        return row[0] if row else None
