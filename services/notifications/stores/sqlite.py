"""Notifications on SQLite (embedded): notifications, their change log and known contacts in one file."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from services.kit.stores.sqlite import SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.notifications.domain import Channel, Notification, NotificationFilter, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    recipient TEXT NOT NULL,
    channel INTEGER NOT NULL,
    template TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    status INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    order_id TEXT NOT NULL,
    auction_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    next_attempt_at TEXT,
    lease_until TEXT,
    UNIQUE (event_id, channel, recipient)
);
CREATE INDEX IF NOT EXISTS notifications_newest ON notifications (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at);
CREATE TABLE IF NOT EXISTS notification_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (user_id TEXT PRIMARY KEY, email TEXT NOT NULL);
"""
_COLUMNS = ("id, event_id, event_type, recipient, channel, template, subject, body, status, attempts, last_error,"
            " order_id, auction_id, user_id, created_at, updated_at, sent_at, next_attempt_at")


def _text(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if at is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _row(n: Notification) -> tuple:
    return (n.id, n.event_id, n.event_type, n.recipient, int(n.channel), n.template, n.subject, n.body, int(n.status),
            n.attempts, n.last_error, n.order_id, n.auction_id, n.user_id, _text(n.created_at), _text(n.updated_at),
            _text(n.sent_at), _text(n.next_attempt_at))


def _notification(row) -> Notification | None:
    if row is None:
        return None
    r = tuple(row)
    return Notification(id=r[0], event_id=r[1], event_type=r[2], recipient=r[3], channel=Channel(r[4]), template=r[5],
                        subject=r[6], body=r[7], status=Status(r[8]), attempts=r[9], last_error=r[10],
                        order_id=r[11], auction_id=r[12], user_id=r[13], created_at=_time(r[14]),
                        updated_at=_time(r[15]), sent_at=_time(r[16]), next_attempt_at=_time(r[17]))


def _log(conn: sqlite3.Connection, n: Notification) -> int:
    return conn.execute("INSERT INTO notification_changes (notification_id, snapshot) VALUES (?, ?)",
                        (n.id, n.to_json())).lastrowid


@timed_operations
class SqliteNotificationStore:
    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path)

    async def start(self) -> None:
        await self.db.run(lambda conn: conn.executescript(_SCHEMA))

    async def create(self, notifications: Sequence[Notification]) -> list[tuple[int, Notification]]:
        def write(conn: sqlite3.Connection):
            out = []
            for n in notifications:
                cur = conn.execute(f"INSERT OR IGNORE INTO notifications ({_COLUMNS}) VALUES ({', '.join('?' * 18)})",
                                   _row(n))
                if cur.rowcount == 1:
                    out.append((_log(conn, n), n))
            return out

        return await self.db.transaction(write)

    async def claim_due(self, at: datetime, limit: int, lease_seconds: float) -> list[Notification]:
        def write(conn: sqlite3.Connection):
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM notifications WHERE (status = ? OR (status = ? AND next_attempt_at <= ?))"
                " AND (lease_until IS NULL OR lease_until < ?) ORDER BY created_at LIMIT ?",
                (int(Status.QUEUED), int(Status.RETRYING), _text(at), _text(at), limit)).fetchall()
            until = _text(at + timedelta(seconds=lease_seconds))
            conn.executemany("UPDATE notifications SET lease_until = ? WHERE id = ?", [(until, r[0]) for r in rows])
            return [_notification(r) for r in rows]

        return await self.db.transaction(write)

    async def record(self, n: Notification) -> int:
        def write(conn: sqlite3.Connection) -> int:
            conn.execute("UPDATE notifications SET status = ?, attempts = ?, last_error = ?, updated_at = ?,"
                         " sent_at = ?, next_attempt_at = ?, lease_until = NULL WHERE id = ?",
                         (int(n.status), n.attempts, n.last_error, _text(n.updated_at), _text(n.sent_at),
                          _text(n.next_attempt_at), n.id))
            return _log(conn, n)

        return await self.db.transaction(write)

    async def get(self, notification_id: str) -> Notification | None:
        return await self.db.run(lambda c: _notification(
            c.execute(f"SELECT {_COLUMNS} FROM notifications WHERE id = ?", (notification_id,)).fetchone()))

    async def list(self, filter: NotificationFilter, cursor: str, limit: int) -> tuple[list[Notification], str]:
        where, args = ["1 = 1"], []
        for column, value in (("recipient", filter.recipient), ("order_id", filter.order_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        for column, value in (("channel", filter.channel), ("status", filter.status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(int(value))
        if cursor:
            created, _, nid = cursor.partition("|")
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [created, created, nid]

        def read(conn: sqlite3.Connection):
            rows = conn.execute(f"SELECT {_COLUMNS} FROM notifications WHERE {' AND '.join(where)}"
                                " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1)).fetchall()
            page = [_notification(r) for r in rows[:limit]]
            after = f"{_text(page[-1].created_at)}|{page[-1].id}" if len(rows) > limit else ""
            return page, after

        return await self.db.run(read)

    async def changes(self, after: int, upto: int, limit: int) -> list[tuple[int, Notification]]:
        rows = await self.db.run(lambda c: c.execute(
            "SELECT seq, snapshot FROM notification_changes WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (after, upto, limit)).fetchall())
        return [(seq, Notification.from_json(snapshot)) for seq, snapshot in rows]

    async def last_sequence(self) -> int:
        return await self.db.run(lambda c: c.execute("SELECT coalesce(max(seq), 0) FROM notification_changes")
                                 .fetchone()[0])

    async def remember_contact(self, user_id: str, email: str) -> None:
        await self.db.transaction(lambda c: c.execute(
            "INSERT INTO contacts (user_id, email) VALUES (?, ?) ON CONFLICT (user_id) DO UPDATE SET email = ?",
            (user_id, email, email)))

    async def contact(self, user_id: str) -> str | None:
        row = await self.db.run(lambda c: c.execute("SELECT email FROM contacts WHERE user_id = ?",
                                                    (user_id,)).fetchone())
        return row[0] if row else None

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
