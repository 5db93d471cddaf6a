"""The payments SQL both adapters share: the table, its columns, the reads and the compare-and-set writes.

Each adapter supplies its dialect: `_transaction(fn)` and `_read(fn)` (fn(conn) off the event loop),
`_execute(conn, sql, args)` (a DB-API cursor; SQL here is written with %s placeholders), how a time
is kept (`_db_time` / `_py_time` / `_cursor_time`: TIMESTAMPTZ on PostgreSQL, fixed-width text on
SQLite), and the statements that differ: `_INSERT_NEW` (a second payment of an order is ignored),
`_status_in`, `_older_than` (the page cursor) and `_flag_cancel`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from typing import Any

from services.kit.stores.sql import SqlTimes
from services.kit.telemetry.metrics import timed_operations
from services.kit.values import Money
from services.payments.domain import Payment, PaymentFilter, Status


def schema(*, time: str, false: str) -> str:
    """The payments table and its indexes; `time` is the dialect's time column type, `false` its false.

    (On SQLite BIGINT and SMALLINT have INTEGER affinity, and BOOLEAN keeps the 0/1 written to it.)"""
    return f"""
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
    next_attempt_at {time},
    created_at {time} NOT NULL,
    updated_at {time} NOT NULL,
    completed_at {time},
    refunded_at {time},
    cancel_requested BOOLEAN NOT NULL DEFAULT {false}
);
CREATE INDEX IF NOT EXISTS payments_newest ON payments (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_by_client ON payments (client_id, created_at DESC, id DESC);
"""


COLUMNS = ("id, order_id, client_id, user_id, currency_code, amount_minor, status, provider,"
           " provider_reference, attempts, failure_reason, card_hint, refund_reference, refund_reason,"
           " next_attempt_at, created_at, updated_at, completed_at, refunded_at, cancel_requested")
_STATE = ("status", "provider_reference", "attempts", "failure_reason", "refund_reference", "refund_reason",
          "next_attempt_at", "updated_at", "completed_at", "refunded_at")
_VALUES = ", ".join(["%s"] * len(COLUMNS.split(",")))


@timed_operations
class SqlPaymentStore(SqlTimes):
    outbox: Any
    _INSERT_NEW: str  # INSERT ... ({columns}) VALUES ({values}) that does nothing when the order has one

    @abc.abstractmethod
    def _status_in(self, wanted: list[int]) -> tuple[str, list[Any]]:
        """The condition `status is one of wanted`, and its arguments."""

    @abc.abstractmethod
    def _flag_cancel(self, conn: Any, order_id: str) -> Payment | None:
        """Set the order's payment's cancel flag; the payment after it (None when none)."""

    def _row(self, p: Payment) -> tuple:
        t = self._db_time
        return (p.id, p.order_id, p.client_id, p.user_id, p.amount.currency_code, p.amount.amount_minor,
                int(p.status), p.provider, p.provider_reference, p.attempts, p.failure_reason, p.card_hint,
                p.refund_reference, p.refund_reason, t(p.next_attempt_at), t(p.created_at), t(p.updated_at),
                t(p.completed_at), t(p.refunded_at), p.cancel_requested)

    def _state(self, p: Payment) -> tuple:
        t = self._db_time
        return (int(p.status), p.provider_reference, p.attempts, p.failure_reason, p.refund_reference,
                p.refund_reason, t(p.next_attempt_at), t(p.updated_at), t(p.completed_at), t(p.refunded_at))

    def _payment(self, row) -> Payment | None:
        if row is None:
            return None
        (pid, order_id, client_id, user_id, currency, amount, status, provider, reference, attempts, reason,
         hint, refund_reference, refund_reason, next_at, created, updated, completed, refunded_at,
         cancel) = tuple(row)
        t = self._py_time
        return Payment(id=pid, order_id=order_id, client_id=client_id, user_id=user_id,
                       amount=Money(currency, amount), status=Status(status), provider=provider,
                       provider_reference=reference, attempts=attempts, failure_reason=reason, card_hint=hint,
                       refund_reference=refund_reference, refund_reason=refund_reason,
                       next_attempt_at=t(next_at), created_at=t(created), updated_at=t(updated),
                       completed_at=t(completed), refunded_at=t(refunded_at), cancel_requested=bool(cancel))

    def _by_order(self, conn: Any, order_id: str) -> Payment | None:
        return self._payment(self._execute(conn, f"SELECT {COLUMNS} FROM payments WHERE order_id = %s",
                                           (order_id,)).fetchone())

    async def open(self, payment: Payment) -> tuple[Payment, bool]:
        def write(conn):
            cur = self._execute(conn, self._INSERT_NEW.format(columns=COLUMNS, values=_VALUES),
                                self._row(payment))
            if cur.rowcount == 1:
                return payment, True
            return self._by_order(conn, payment.order_id), False

        return await self._transaction(write)

    async def save(self, payment: Payment, expect: Iterable[Status], event=None) -> bool:
        status_in, wanted = self._status_in([int(s) for s in expect])

        def write(conn) -> bool:
            cur = self._execute(
                conn, f"UPDATE payments SET {', '.join(f'{c} = %s' for c in _STATE)} WHERE id = %s"
                      f" AND {status_in}", (*self._state(payment), payment.id, *wanted))
            if cur.rowcount != 1:
                return False
            if event is not None:
                self.outbox.add(conn, [event])
            return True

        return await self._transaction(write)

    async def request_cancel(self, order_id: str) -> Payment | None:
        return await self._transaction(lambda conn: self._flag_cancel(conn, order_id))

    async def get(self, payment_id: str) -> Payment | None:
        return await self._read(lambda conn: self._payment(self._execute(
            conn, f"SELECT {COLUMNS} FROM payments WHERE id = %s", (payment_id,)).fetchone()))

    async def get_by_order(self, order_id: str) -> Payment | None:
        return await self._read(lambda conn: self._by_order(conn, order_id))

    async def list(self, filter: PaymentFilter, cursor: str, limit: int) -> tuple[list[Payment], str]:
        where, args = ["1 = 1"], []
        for column, value in (("order_id", filter.order_id), ("client_id", filter.client_id),
                              ("user_id", filter.user_id)):
            if value:
                where.append(f"{column} = %s")
                args.append(value)
        if filter.status is not None:
            where.append("status = %s")
            args.append(int(filter.status))
        return await self._newest_first(f"SELECT {COLUMNS} FROM payments", where, args, cursor, limit,
                                        self._payment)
