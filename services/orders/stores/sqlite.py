"""Orders on SQLite (embedded): orders, their status history and the outbox in one file."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.kit.values import Money
from services.orders.domain import Line, Order, Status, StatusChange

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    items TEXT NOT NULL,
    status INTEGER NOT NULL,
    payment_id TEXT NOT NULL,
    payment_due_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_client ON orders (client_id, created_at DESC, id);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status);
CREATE TABLE IF NOT EXISTS order_history (
    order_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status INTEGER NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (order_id, sequence)
);
"""


def _items(order: Order) -> str:
    return json.dumps([[i.product_id, i.quantity, i.unit_price.currency_code, i.unit_price.amount_minor,
                        i.product_name, i.seller_id] for i in order.items])


def _read(conn: sqlite3.Connection, order_id: str) -> Order | None:
    row = conn.execute("SELECT id, client_id, user_id, items, status, payment_id, payment_due_at, created_at,"
                       " updated_at FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        return None
    oid, client, user, items, status, payment, due, created, updated = tuple(row)
    history = conn.execute("SELECT sequence, status, at, reason, event_id FROM order_history"
                           " WHERE order_id = ? ORDER BY sequence", (oid,)).fetchall()
    return Order(
        id=oid, client_id=client, user_id=user, status=Status(status), payment_id=payment,
        items=tuple(Line(p, q, Money(c, a), n, s) for p, q, c, a, n, s in json.loads(items)),
        history=tuple(StatusChange(h[0], Status(h[1]), datetime.fromisoformat(h[2]), h[3], h[4])
                      for h in history),
        payment_due_at=datetime.fromisoformat(due), created_at=datetime.fromisoformat(created),
        updated_at=datetime.fromisoformat(updated),
    )


def _change(conn: sqlite3.Connection, order: Order) -> None:
    c = order.history[-1]
    conn.execute("INSERT INTO order_history VALUES (?, ?, ?, ?, ?, ?)",
                 (order.id, c.sequence, int(c.status), c.at.isoformat(), c.reason, c.event_id))


@timed_operations
class SqliteOrderStore(SqliteAdapter):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("orders_outbox")

    async def start(self) -> None:
        await self._create_tables(_SCHEMA)

    async def create(self, order: Order, event) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO orders (id, client_id, user_id, items, status, payment_id, payment_due_at,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (order.id, order.client_id, order.user_id, _items(order), int(order.status), order.payment_id,
                 order.payment_due_at.isoformat(), order.created_at.isoformat(),
                 order.updated_at.isoformat()))
            _change(conn, order)
            self.outbox.add(conn, [event])

        await self.db.transaction(write)

    async def get(self, order_id: str) -> Order | None:
        return await self.db.run(lambda c: _read(c, order_id))

    async def list_by_client(self, client_id: str, cursor: str, limit: int) -> tuple[list[Order], str]:
        offset = int(cursor or 0)

        def read(conn: sqlite3.Connection):
            ids = conn.execute("SELECT id FROM orders WHERE client_id = ? ORDER BY created_at DESC, id"
                               " LIMIT ? OFFSET ?", (client_id, limit + 1, offset)).fetchall()
            return [_read(conn, r[0]) for r in ids[:limit]], (str(offset + limit) if len(ids) > limit else "")

        return await self.db.run(read)

    async def list_all(self, status: Status | None, cursor: str, limit: int) -> tuple[list[Order], str]:
        after = int(cursor or 0)

        def read(conn: sqlite3.Connection):
            where, args = "seq > ?", [after]
            if status is not None:
                where += " AND status = ?"
                args.append(int(status))
            rows = conn.execute(f"SELECT seq, id FROM orders WHERE {where} ORDER BY seq LIMIT ?",
                                (*args, limit + 1)).fetchall()
            page = rows[:limit]
            return [_read(conn, r[1]) for r in page], (str(page[-1][0]) if len(rows) > limit else "")

        return await self.db.run(read)

    async def transition(self, order: Order, event, *, expect: Status | None = None) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            sql, args = "UPDATE orders SET status = ?, payment_id = ?, updated_at = ? WHERE id = ?", [
                int(order.status), order.payment_id, order.updated_at.isoformat(), order.id]
            if expect is not None:
                sql += " AND status = ?"
                args.append(int(expect))
            if conn.execute(sql, args).rowcount != 1:
                return False
            _change(conn, order)
            if event is not None:
                self.outbox.add(conn, [event])
            return True

        return await self.db.transaction(write)

    async def emit(self, event) -> None:
        await self.db.transaction(lambda conn: self.outbox.add(conn, [event]))

    async def attach_payment(self, order_id: str, payment_id: str) -> None:
        await self.db.transaction(lambda conn: conn.execute(
            "UPDATE orders SET payment_id = ? WHERE id = ? AND payment_id = ''", (payment_id, order_id)))

    async def pending_due(self, at: datetime, limit: int) -> list[Order]:
        def read(conn: sqlite3.Connection) -> list[Order]:
            rows = conn.execute("SELECT id, payment_due_at FROM orders WHERE status = ?",
                                (int(Status.PENDING),)).fetchall()
            due = sorted((datetime.fromisoformat(d), i) for i, d in rows if datetime.fromisoformat(d) <= at)
            return [_read(conn, i) for _, i in due[:limit]]

        return await self.db.run(read)
