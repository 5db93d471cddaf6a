"""Payments on PostgreSQL: payments (unique per order: the natural idempotency key) and the outbox,
in the domain's own schema."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import psycopg2

from services.kit.bus.outbox import OutboxRelay
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresDatabase
from services.kit.telemetry.metrics import timed_operations
from services.payments.domain import Money, Payment, PaymentFilter, Status

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    status SMALLINT NOT NULL,
    provider TEXT NOT NULL,
    provider_reference TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    failure_reason TEXT NOT NULL,
    card_hint TEXT NOT NULL,
    refund_reference TEXT NOT NULL,
    refund_reason TEXT NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    refunded_at TIMESTAMPTZ,
    cancel_requested BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS payments_newest ON payments (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_by_client ON payments (client_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_by_user ON payments (user_id, created_at DESC, id DESC);
"""
_COLUMNS = ("id, order_id, client_id, user_id, currency_code, amount_minor, status, provider, provider_reference,"
            " attempts, failure_reason, card_hint, refund_reference, refund_reason, next_attempt_at, created_at,"
            " updated_at, completed_at, refunded_at, cancel_requested")
_STATE = ("status", "provider_reference", "attempts", "failure_reason", "refund_reference", "refund_reason",
          "next_attempt_at", "updated_at", "completed_at", "refunded_at")


def _row(p: Payment) -> tuple:
    return (p.id, p.order_id, p.client_id, p.user_id, p.amount.currency_code, p.amount.amount_minor, int(p.status),
            p.provider, p.provider_reference, p.attempts, p.failure_reason, p.card_hint, p.refund_reference,
            p.refund_reason, p.next_attempt_at, p.created_at, p.updated_at, p.completed_at, p.refunded_at,
            p.cancel_requested)


def _state(p: Payment) -> tuple:
    return (int(p.status), p.provider_reference, p.attempts, p.failure_reason, p.refund_reference, p.refund_reason,
            p.next_attempt_at, p.updated_at, p.completed_at, p.refunded_at)


def _payment(row) -> Payment | None:
    if row is None:
        return None
    (pid, order_id, client_id, user_id, currency, amount, status, provider, reference, attempts, reason, hint,
     refund_reference, refund_reason, next_at, created, updated, completed, refunded_at, cancel) = row
    return Payment(id=pid, order_id=order_id, client_id=client_id, user_id=user_id, amount=Money(currency, amount),
                   status=Status(status), provider=provider, provider_reference=reference, attempts=attempts,
                   failure_reason=reason, card_hint=hint, refund_reference=refund_reference,
                   refund_reason=refund_reason, next_attempt_at=next_at, created_at=created, updated_at=updated,
                   completed_at=completed, refunded_at=refunded_at, cancel_requested=cancel)


@timed_operations
class PostgresPaymentStore:
    def __init__(self, url: str, *, schema: str = "payments") -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema)
        self.outbox = PostgresOutbox("payments_outbox")

    async def start(self) -> None:
        def create(conn) -> None:
            with conn.cursor() as cur:
                # Two replicas starting at once must not race on CREATE TABLE.
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.payments.schema",))
                cur.execute(SCHEMA)

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)

    def _create_outbox(self) -> None:
        conn = self.connect_relay()
        try:
            self.outbox.create_schema(conn)
        finally:
            conn.close()

    def connect_relay(self):
        return psycopg2.connect(self.url, connect_timeout=3, options=f"-c search_path={self.schema},public")

    async def _one(self, sql: str, args: tuple) -> Payment | None:
        def go(conn):
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return _payment(cur.fetchone())

        return await self.db.transaction(go)

    async def open(self, payment: Payment) -> tuple[Payment, bool]:
        def write(conn):
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO payments ({_COLUMNS}) VALUES ({', '.join(['%s'] * 20)})"
                            " ON CONFLICT (order_id) DO NOTHING", _row(payment))
                if cur.rowcount == 1:
                    return payment, True
                cur.execute(f"SELECT {_COLUMNS} FROM payments WHERE order_id = %s", (payment.order_id,))
                return _payment(cur.fetchone()), False

        return await self.db.transaction(write)

    async def save(self, payment: Payment, expect: Iterable[Status], event=None) -> bool:
        wanted = [int(s) for s in expect]

        def write(conn) -> bool:
            with conn.cursor() as cur:
                cur.execute(
                    f"UPDATE payments SET {', '.join(f'{c} = %s' for c in _STATE)} WHERE id = %s"
                    " AND status = ANY(%s)", (*_state(payment), payment.id, wanted))
                if cur.rowcount != 1:
                    return False
                if event is not None:
                    self.outbox.add(cur, [event])
                return True

        return await self.db.transaction(write)

    async def request_cancel(self, order_id: str) -> Payment | None:
        return await self._one(f"UPDATE payments SET cancel_requested = true WHERE order_id = %s RETURNING {_COLUMNS}",
                               (order_id,))

    async def get(self, payment_id: str) -> Payment | None:
        return await self._one(f"SELECT {_COLUMNS} FROM payments WHERE id = %s", (payment_id,))

    async def get_by_order(self, order_id: str) -> Payment | None:
        return await self._one(f"SELECT {_COLUMNS} FROM payments WHERE order_id = %s", (order_id,))

    async def list(self, filter: PaymentFilter, cursor: str, limit: int) -> tuple[list[Payment], str]:
        where, args = ["true"], []
        for column, value in (("order_id", filter.order_id), ("client_id", filter.client_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        if filter.status is not None:
            where.append("status = %s")
            args.append(int(filter.status))
        if cursor:
            created, _, pid = cursor.partition("|")
            where.append("(created_at, id) < (%s::timestamptz, %s)")
            args += [created, pid]

        def read(conn):
            with conn.cursor() as cur:
                cur.execute(f"SELECT {_COLUMNS} FROM payments WHERE {' AND '.join(where)}"
                            " ORDER BY created_at DESC, id DESC LIMIT %s", (*args, limit + 1))
                rows = cur.fetchall()
            page = [_payment(r) for r in rows[:limit]]
            after = f"{page[-1].created_at.isoformat()}|{page[-1].id}" if len(rows) > limit else ""
            return page, after

        return await self.db.transaction(read)

    def relay(self, bus) -> OutboxRelay:
        return OutboxRelay(bus, self.outbox, self.connect_relay, idle_wait=0.2)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        """Remove the whole schema (tests)."""
        def go(conn) -> None:
            with conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        await self.db.transaction(go)
