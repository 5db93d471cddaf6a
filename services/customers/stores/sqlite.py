"""Customers on SQLite (embedded): the same tables as PostgreSQL, and the outbox in the same file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from services.customers.domain import EmailTaken, Kind, Party
from services.customers.stores.rows import COLUMNS, TABLES, like_pattern, to_party, values
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '{{}}',
    description TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


@timed_operations
class SqliteCustomerStore(SqliteAdapter):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("customers_outbox")

    async def start(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            for table in TABLES.values():
                conn.executescript(_SCHEMA.format(table=table))

        await self._create_tables(create)

    async def create(self, party: Party, event) -> Party:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {TABLES[party.kind]} (id, name, email, email_key, phone, address, description,"
                " user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values(party), party.created_at.isoformat(), party.updated_at.isoformat()),
            )
            self.outbox.add(conn, [event])

        try:
            await self.db.transaction(insert)
        except sqlite3.IntegrityError:
            raise EmailTaken(party.email) from None
        return party

    async def get(self, kind: Kind, party_id: str) -> Party | None:
        row = await self.db.run(
            lambda c: c.execute(f"SELECT {COLUMNS} FROM {TABLES[kind]} WHERE id = ?", (party_id,)).fetchone()
        )
        return to_party(kind, tuple(row))[1] if row else None

    async def update(self, party: Party) -> Party:
        pid, name, email, email_key, phone, address, description, _ = values(party)

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"UPDATE {TABLES[party.kind]} SET name=?, email=?, email_key=?, phone=?, address=?,"
                " description=?, updated_at=? WHERE id = ?",
                (name, email, email_key, phone, address, description, party.updated_at.isoformat(), pid),
            )

        try:
            await self.db.transaction(write)
        except sqlite3.IntegrityError:
            raise EmailTaken(party.email) from None
        return party

    async def list(self, kind: Kind, query: str, after: int, limit: int,
                   owner: str | None = None) -> list[tuple[int, Party]]:
        where, args = "seq > ?", [after]
        if query:
            where += " AND (lower(name) LIKE ? ESCAPE '\\' OR email_key LIKE ? ESCAPE '\\')"
            args += [like_pattern(query)] * 2
        if owner is not None:
            where += " AND user_id = ?"
            args.append(owner)
        sql = f"SELECT {COLUMNS} FROM {TABLES[kind]} WHERE {where} ORDER BY seq LIMIT ?"
        rows = await self.db.run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [to_party(kind, tuple(row)) for row in rows]
