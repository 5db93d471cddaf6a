"""Catalog on SQLite (embedded): products, reservations, stock adjustments and the outbox in one file.

SQLite has one writer at a time (BEGIN IMMEDIATE), so a reservation's read-check-write is atomic."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from services.catalog.domain import (
    Product,
    ProductMissing,
    Reservation,
    ReservationConflict,
    ReservationReleased,
    ReservationState,
    StockChange,
    StockShort,
    VersionMismatch,
    search_words,
    with_stock,
)
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.kit.values import Money

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id TEXT PRIMARY KEY,
    seller_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    attributes TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS products_newest ON products (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS products_by_seller ON products (seller_id, created_at DESC);
CREATE TABLE IF NOT EXISTS reservations (
    order_id TEXT PRIMARY KEY,
    items TEXT NOT NULL,
    state TEXT NOT NULL,
    reserved_at TEXT,
    released_at TEXT,
    release_reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS stock_adjustments (
    request_id TEXT PRIMARY KEY,
    product_id TEXT NOT NULL,
    delta INTEGER NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
_COLUMNS = ("id, seller_id, name, description, category, currency_code, amount_minor, stock, attributes,"
            " version, created_at, updated_at")


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def to_product(row) -> Product:
    (pid, seller, name, description, category, currency, amount, stock, attributes, version, created,
     updated) = tuple(row)[:12]
    return Product(id=pid, seller_id=seller, name=name, description=description, category=category,
                   price=Money(currency, amount), stock=stock, attributes=json.loads(attributes),
                   version=version, created_at=_time(created), updated_at=_time(updated))


def _values(p: Product) -> tuple:
    return (p.id, p.seller_id, p.name, p.description, p.category, p.price.currency_code, p.price.amount_minor,
            p.stock, json.dumps(p.attributes), p.version, _iso(p.created_at), _iso(p.updated_at))


def to_reservation(row) -> Reservation:
    order_id, items, state, reserved, released, reason = tuple(row)
    return Reservation(order_id=order_id, items=tuple((pid, q) for pid, q in json.loads(items)),
                       state=ReservationState(state), reserved_at=_time(reserved),
                       released_at=_time(released), release_reason=reason)


@timed_operations
class SqliteCatalogStore(SqliteAdapter):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("catalog_outbox")

    async def start(self) -> None:
        await self._create_tables(_SCHEMA)

    async def create(self, product: Product, event) -> Product:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO products ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         _values(product))
            self.outbox.add(conn, [event])

        await self.db.transaction(insert)
        return product

    @staticmethod
    def _get(conn: sqlite3.Connection, product_id: str) -> Product | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM products WHERE id = ?", (product_id,)).fetchone()
        return to_product(row) if row else None

    async def get(self, product_id: str) -> Product | None:
        return await self.db.run(lambda c: self._get(c, product_id))

    async def replace(self, product: Product, expected_version: int, events) -> None:
        def write(conn: sqlite3.Connection) -> None:
            v = _values(product)
            cur = conn.execute(
                "UPDATE products SET name=?, description=?, category=?, currency_code=?, amount_minor=?,"
                " stock=?, attributes=?, version=?, updated_at=? WHERE id = ? AND version = ?",
                (*v[2:10], v[11], product.id, expected_version))
            if cur.rowcount == 0:
                if self._get(conn, product.id) is None:
                    raise ProductMissing(product.id)
                raise VersionMismatch(product.id)
            self.outbox.add(conn, events)

        await self.db.transaction(write)

    async def list(self, seller_id: str, category: str, query: str, offset: int, limit: int) -> list[Product]:
        where, args = ["1=1"], []
        if seller_id:
            where.append("seller_id = ?")
            args.append(seller_id)
        if category:
            where.append("category = ?")
            args.append(category)
        words = search_words(query)
        score = "0"
        if words:
            text = "lower(name || ' ' || description || ' ' || category)"
            score = " + ".join(f"(instr({text}, ?) > 0)" for _ in words)
            where.append(f"({score}) > 0")
        sql = (f"SELECT {_COLUMNS}, ({score}) AS score FROM products WHERE {' AND '.join(where)}"
               " ORDER BY score DESC, created_at DESC, id DESC LIMIT ? OFFSET ?")
        params = (*words, *args, *words, limit, offset)
        rows = await self.db.run(lambda c: c.execute(sql, params).fetchall())
        return [to_product(r) for r in rows]

    def _change_stock(self, conn: sqlite3.Connection, product_id: str, delta: int, at) -> StockChange | None:
        before = self._get(conn, product_id)
        if before is None:
            raise ProductMissing(product_id)
        if before.stock + delta < 0:
            return None
        after = with_stock(before, delta, at)
        conn.execute("UPDATE products SET stock = ?, version = ?, updated_at = ? WHERE id = ?",
                     (after.stock, after.version, _iso(at), product_id))
        return StockChange(before, after)

    async def adjust(self, product_id: str, delta: int, request_id: str, reason: str, at,
                     events_for) -> Product:
        def write(conn: sqlite3.Connection) -> Product:
            if request_id:
                seen = conn.execute("SELECT 1 FROM stock_adjustments WHERE request_id = ?",
                                    (request_id,)).fetchone()
                if seen:
                    current = self._get(conn, product_id)
                    if current is None:
                        raise ProductMissing(product_id)
                    return current
            change = self._change_stock(conn, product_id, delta, at)
            if change is None:
                raise StockShort({product_id: (-delta, self._get(conn, product_id).stock)})
            if request_id:
                conn.execute("INSERT INTO stock_adjustments VALUES (?, ?, ?, ?, ?)",
                             (request_id, product_id, delta, reason, _iso(at)))
            self.outbox.add(conn, events_for([change]))
            return change.after

        return await self.db.transaction(write)

    @staticmethod
    def _reservation(conn: sqlite3.Connection, order_id: str) -> Reservation | None:
        row = conn.execute("SELECT * FROM reservations WHERE order_id = ?", (order_id,)).fetchone()
        return to_reservation(row) if row else None

    async def reserve(self, order_id: str, items, at, events_for) -> Reservation:
        def write(conn: sqlite3.Connection) -> Reservation:
            found = self._reservation(conn, order_id)
            if found is not None:
                if found.state is ReservationState.RELEASED:
                    raise ReservationReleased(order_id)
                if found.items != tuple(items):
                    raise ReservationConflict(order_id)
                return found
            changes, shortages = [], {}
            for product_id, quantity in items:
                change = self._change_stock(conn, product_id, -quantity, at)
                if change is None:
                    shortages[product_id] = (quantity, self._get(conn, product_id).stock)
                else:
                    changes.append(change)
            if shortages:
                raise StockShort(shortages)  # rolls the transaction back: nothing was taken
            conn.execute("INSERT INTO reservations (order_id, items, state, reserved_at) VALUES (?, ?, ?, ?)",
                         (order_id, json.dumps([list(i) for i in items]), ReservationState.RESERVED.value,
                          _iso(at)))
            self.outbox.add(conn, events_for(changes))
            return self._reservation(conn, order_id)

        return await self.db.transaction(write)

    async def release(self, order_id: str, reason: str, at, events_for) -> Reservation:
        def write(conn: sqlite3.Connection) -> Reservation:
            found = self._reservation(conn, order_id)
            if found is None:
                conn.execute(
                    "INSERT INTO reservations (order_id, items, state, released_at, release_reason)"
                    " VALUES (?, '[]', ?, ?, ?)",
                    (order_id, ReservationState.RELEASED.value, _iso(at), reason))
            elif found.state is ReservationState.RESERVED:
                changes = [c for pid, q in found.items
                           if (c := self._change_stock(conn, pid, q, at)) is not None]
                conn.execute("UPDATE reservations SET state = ?, released_at = ?, release_reason = ?"
                             " WHERE order_id = ?",
                             (ReservationState.RELEASED.value, _iso(at), reason, order_id))
                self.outbox.add(conn, events_for(changes))
            return self._reservation(conn, order_id)

        return await self.db.transaction(write)

    async def follow(self, on_change) -> None:
        """One process owns the file: the service sees every change it makes itself."""
