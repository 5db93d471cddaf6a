"""Notifications on PostgreSQL: notifications (unique per event, channel and recipient), their change
log and known contacts, in the domain's own schema. Dispatchers on several replicas share the due
rows through leases taken with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.kit.stores.postgres import PostgresDatabase
from services.kit.telemetry.metrics import timed_operations
from services.notifications.domain import Channel, Notification, NotificationFilter, Status

SCHEMA = """
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
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    sent_at TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ,
    lease_until TIMESTAMPTZ,
    UNIQUE (event_id, channel, recipient)
);
CREATE INDEX IF NOT EXISTS notifications_newest ON notifications (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (status, next_attempt_at) WHERE status IN (1, 4);
CREATE INDEX IF NOT EXISTS notifications_by_order ON notifications (order_id);
CREATE TABLE IF NOT EXISTS notification_changes (
    seq BIGSERIAL PRIMARY KEY,
    notification_id TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS contacts (user_id TEXT PRIMARY KEY, email TEXT NOT NULL);
"""
_COLUMNS = ("id, event_id, event_type, recipient, channel, template, subject, body, status, attempts, last_error,"
            " order_id, auction_id, user_id, created_at, updated_at, sent_at, next_attempt_at")


def _row(n: Notification) -> tuple:
    return (n.id, n.event_id, n.event_type, n.recipient, int(n.channel), n.template, n.subject, n.body, int(n.status),
            n.attempts, n.last_error, n.order_id, n.auction_id, n.user_id, n.created_at, n.updated_at, n.sent_at,
            n.next_attempt_at)


def _notification(r) -> Notification | None:
    if r is None:
        return None
    return Notification(id=r[0], event_id=r[1], event_type=r[2], recipient=r[3], channel=Channel(r[4]), template=r[5],
                        subject=r[6], body=r[7], status=Status(r[8]), attempts=r[9], last_error=r[10],
                        order_id=r[11], auction_id=r[12], user_id=r[13], created_at=r[14], updated_at=r[15],
                        sent_at=r[16], next_attempt_at=r[17])


def _log(cur, n: Notification) -> int:
    cur.execute("INSERT INTO notification_changes (notification_id, snapshot) VALUES (%s, %s) RETURNING seq",
                (n.id, n.to_json()))
    return cur.fetchone()[0]


@timed_operations
class PostgresNotificationStore:
    def __init__(self, url: str, *, schema: str = "notifications") -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema)

    async def _go(self, fn):
        def run(conn):
            with conn.cursor() as cur:
                return fn(cur)

        return await self.db.transaction(run)

    async def start(self) -> None:
        def create(cur) -> None:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.notifications.schema",))
            cur.execute(SCHEMA)

        await self._go(create)

    async def create(self, notifications: Sequence[Notification]) -> list[tuple[int, Notification]]:
        def write(cur):
            out = []
            for n in notifications:
                cur.execute(f"INSERT INTO notifications ({_COLUMNS}) VALUES ({', '.join(['%s'] * 18)})"
                            " ON CONFLICT (event_id, channel, recipient) DO NOTHING", _row(n))
                if cur.rowcount == 1:
                    out.append((_log(cur, n), n))
            return out

        return await self._go(write)

    async def claim_due(self, at: datetime, limit: int, lease_seconds: float) -> list[Notification]:
        def write(cur):
            cur.execute(
                f"SELECT {_COLUMNS} FROM notifications WHERE (status = %s OR (status = %s AND next_attempt_at <= %s))"
                " AND (lease_until IS NULL OR lease_until < %s) ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED",
                (int(Status.QUEUED), int(Status.RETRYING), at, at, limit))
            rows = cur.fetchall()
            if rows:
                cur.execute("UPDATE notifications SET lease_until = %s WHERE id = ANY(%s)",
                            (at + timedelta(seconds=lease_seconds), [r[0] for r in rows]))
            return [_notification(r) for r in rows]

        return await self._go(write)

    async def record(self, n: Notification) -> int:
        def write(cur) -> int:
            cur.execute("UPDATE notifications SET status = %s, attempts = %s, last_error = %s, updated_at = %s,"
                        " sent_at = %s, next_attempt_at = %s, lease_until = NULL WHERE id = %s",
                        (int(n.status), n.attempts, n.last_error, n.updated_at, n.sent_at, n.next_attempt_at, n.id))
            return _log(cur, n)

        return await self._go(write)

    async def get(self, notification_id: str) -> Notification | None:
        def read(cur):
            cur.execute(f"SELECT {_COLUMNS} FROM notifications WHERE id = %s", (notification_id,))
            return _notification(cur.fetchone())

        return await self._go(read)

    async def list(self, filter: NotificationFilter, cursor: str, limit: int) -> tuple[list[Notification], str]:
        where, args = ["true"], []
        for column, value in (("recipient", filter.recipient), ("order_id", filter.order_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        for column, value in (("channel", filter.channel), ("status", filter.status)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(int(value))
        if cursor:
            created, _, nid = cursor.partition("|")
            where.append("(created_at, id) < (%s::timestamptz, %s)")
            args += [created, nid]

        def read(cur):
            cur.execute(f"SELECT {_COLUMNS} FROM notifications WHERE {' AND '.join(where)}"
                        " ORDER BY created_at DESC, id DESC LIMIT %s", (*args, limit + 1))
            rows = cur.fetchall()
            page = [_notification(r) for r in rows[:limit]]
            after = f"{page[-1].created_at.isoformat()}|{page[-1].id}" if len(rows) > limit else ""
            return page, after

        return await self._go(read)

    async def changes(self, after: int, upto: int, limit: int) -> list[tuple[int, Notification]]:
        def read(cur):
            cur.execute("SELECT seq, snapshot FROM notification_changes WHERE seq > %s AND seq <= %s"
                        " ORDER BY seq LIMIT %s", (after, upto, limit))
            return [(seq, Notification.from_json(snapshot)) for seq, snapshot in cur.fetchall()]

        return await self._go(read)

    async def last_sequence(self) -> int:
        def read(cur):
            cur.execute("SELECT coalesce(max(seq), 0) FROM notification_changes")
            return cur.fetchone()[0]

        return await self._go(read)

    async def remember_contact(self, user_id: str, email: str) -> None:
        await self._go(lambda cur: cur.execute(
            "INSERT INTO contacts (user_id, email) VALUES (%s, %s) ON CONFLICT (user_id) DO UPDATE SET email = %s",
            (user_id, email, email)))

    async def contact(self, user_id: str) -> str | None:
        def read(cur):
            cur.execute("SELECT email FROM contacts WHERE user_id = %s", (user_id,))
            row = cur.fetchone()
            return row[0] if row else None

        return await self._go(read)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        await self._go(lambda cur: cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
