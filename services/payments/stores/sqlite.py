"""Payments on SQLite (embedded): payments (unique per order) and the outbox in one file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from services.kit.bus.outbox import OutboxRelay
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.payments.domain import Money, Payment, PaymentFilter, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    status INTEGER NOT NULL,
    provider TEXT NOT NULL,
    provider_reference TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failure_reason TEXT NOT NULL,
    card_hint TEXT NOT NULL,
    refund_reference TEXT NOT NULL,
    refund_reason TEXT NOT NULL,
    next_attempt_at TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    completed_at TEXT,
    refunded_at TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS payments_newest ON payments (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_by_client ON payments (client_id, created_at DESC, id DESC);
"""
_COLUMNS = ("id, order_id, client_id, user_id, currency_code, amount_minor, status, provider, provider_reference,"
            " attempts, failure_reason, card_hint, refund_reference, refund_reason, next_attempt_at, created_at,"
            " updated_at, completed_at, refunded_at, cancel_requested")
_STATE = ("status", "provider_reference", "attempts", "failure_reason", "refund_reference", "refund_reason",
          "next_attempt_at", "updated_at", "completed_at", "refunded_at")


def _text(at: datetime | None) -> str | None:
    # Fixed width, so text order is time order.
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if at is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _row(p: Payment) -> tuple:
    return (p.id, p.order_id, p.client_id, p.user_id, p.amount.currency_code, p.amount.amount_minor, int(p.status),
            p.provider, p.provider_reference, p.attempts, p.failure_reason, p.card_hint, p.refund_reference,
            p.refund_reason, _text(p.next_attempt_at), _text(p.created_at), _text(p.updated_at),
            _text(p.completed_at), _text(p.refunded_at), int(p.cancel_requested))


def _payment(row) -> Payment | None:
    if row is None:
        return None
    (pid, order_id, client_id, user_id, currency, amount, status, provider, reference, attempts, reason, hint,
     refund_reference, refund_reason, next_at, created, updated, completed, refunded_at, cancel) = tuple(row)
    return Payment(id=pid, order_id=order_id, client_id=client_id, user_id=user_id, amount=Money(currency, amount),
                   status=Status(status), provider=provider, provider_reference=reference, attempts=attempts,
                   failure_reason=reason, card_hint=hint, refund_reference=refund_reference,
                   refund_reason=refund_reason, next_attempt_at=_time(next_at), created_at=_time(created),
                   updated_at=_time(updated), completed_at=_time(completed), refunded_at=_time(refunded_at),
                   cancel_requested=bool(cancel))


def _state(p: Payment) -> list:
    row = dict(zip([c.strip() for c in _COLUMNS.split(",")], _row(p)))
    return [row[c] for c in _STATE]


@timed_operations
class SqlitePaymentStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("payments_outbox")

    async def start(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.executescript(_SCHEMA)
            self.outbox.create_schema(conn)

        await self.db.run(create)

    async def open(self, payment: Payment) -> tuple[Payment, bool]:
        def write(conn: sqlite3.Connection):
            cur = conn.execute(f"INSERT OR IGNORE INTO payments ({_COLUMNS}) VALUES ({', '.join('?' * 20)})",
                               _row(payment))
            if cur.rowcount == 1:
                return payment, True
            return _payment(conn.execute(f"SELECT {_COLUMNS} FROM payments WHERE order_id = ?",
                                         (payment.order_id,)).fetchone()), False

        return await self.db.transaction(write)

    async def save(self, payment: Payment, expect: Iterable[Status], event=None) -> bool:
        wanted = [int(s) for s in expect]

        def write(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE payments SET {', '.join(f'{c} = ?' for c in _STATE)} WHERE id = ?"
                f" AND status IN ({', '.join('?' * len(wanted))})",
                (*_state(payment), payment.id, *wanted))
            if cur.rowcount != 1:
                return False
            if event is not None:
                self.outbox.add(conn, [event])
            return True

        return await self.db.transaction(write)

    async def request_cancel(self, order_id: str) -> Payment | None:
        def write(conn: sqlite3.Connection):
            conn.execute("UPDATE payments SET cancel_requested = 1 WHERE order_id = ?", (order_id,))
            return _payment(conn.execute(f"SELECT {_COLUMNS} FROM payments WHERE order_id = ?",
                                         (order_id,)).fetchone())

        return await self.db.transaction(write)

    async def get(self, payment_id: str) -> Payment | None:
        return await self.db.run(lambda c: _payment(
            c.execute(f"SELECT {_COLUMNS} FROM payments WHERE id = ?", (payment_id,)).fetchone()))

    async def get_by_order(self, order_id: str) -> Payment | None:
        return await self.db.run(lambda c: _payment(
            c.execute(f"SELECT {_COLUMNS} FROM payments WHERE order_id = ?", (order_id,)).fetchone()))

    async def list(self, filter: PaymentFilter, cursor: str, limit: int) -> tuple[list[Payment], str]:
        where, args = ["1 = 1"], []
        for column, value in (("order_id", filter.order_id), ("client_id", filter.client_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if filter.status is not None:
            where.append("status = ?")
            args.append(int(filter.status))
        if cursor:
            created, _, pid = cursor.partition("|")
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [created, created, pid]

        def read(conn: sqlite3.Connection):
            rows = conn.execute(f"SELECT {_COLUMNS} FROM payments WHERE {' AND '.join(where)}"
                                " ORDER BY created_at DESC, id DESC LIMIT ?", (*args, limit + 1)).fetchall()
            page = [_payment(r) for r in rows[:limit]]
            after = f"{_text(page[-1].created_at)}|{page[-1].id}" if len(rows) > limit else ""
            return page, after

        return await self.db.run(read)

    def relay(self, bus) -> OutboxRelay:
        return OutboxRelay(bus, self.outbox, lambda: sqlite3.connect(self.path, check_same_thread=False),
                           idle_wait=0.2)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()


