"""Customers on PostgreSQL: tables clients and sellers (unique lower(email)) + the outbox, in one schema."""

from __future__ import annotations

import asyncio

import psycopg2
import psycopg2.errors

from services.customers.domain import EmailTaken, Kind, Party
from services.customers.stores.rows import COLUMNS, TABLES, like_pattern, to_party, values
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresAdapter, PostgresDatabase
from services.kit.telemetry.metrics import timed_operations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq BIGSERIAL UNIQUE,
    id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    phone TEXT NOT NULL DEFAULT '',
    address JSONB NOT NULL DEFAULT '{{}}',
    description TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
"""


SCHEMA = "customers"  # the PostgreSQL schema customers keeps its tables in


@timed_operations
class PostgresCustomerStore(PostgresAdapter):
    def __init__(self, url: str, *, schema: str | None = None) -> None:
        self.url = url
        self.schema = schema or SCHEMA
        self.db = PostgresDatabase(url, schema=schema)
        self.outbox = PostgresOutbox("customers_outbox")

    async def start(self) -> None:
        def create(conn) -> None:
            with conn.cursor() as cur:
                for table in TABLES.values():
                    cur.execute(_SCHEMA.format(table=table))

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)

    async def create(self, party: Party, event) -> Party:
        table = TABLES[party.kind]

        def insert(conn) -> None:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {table} (id, name, email, email_key, phone, address, description, user_id,"
                    " created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (*values(party), party.created_at, party.updated_at),
                )
                self.outbox.add(cur, [event])

        try:
            await self.db.transaction(insert)
        except psycopg2.errors.UniqueViolation:
            raise EmailTaken(party.email) from None
        return party

    async def get(self, kind: Kind, party_id: str) -> Party | None:
        def read(conn):
            with conn.cursor() as cur:
                cur.execute(f"SELECT {COLUMNS} FROM {TABLES[kind]} WHERE id::text = %s", (party_id,))
                return cur.fetchone()

        row = await self.db.transaction(read)
        return to_party(kind, row)[1] if row else None

    async def update(self, party: Party) -> Party:
        def write(conn) -> None:
            with conn.cursor() as cur:
                pid, name, email, email_key, phone, address, description, _ = values(party)
                cur.execute(
                    f"UPDATE {TABLES[party.kind]} SET name=%s, email=%s, email_key=%s, phone=%s, address=%s,"
                    " description=%s, updated_at=%s WHERE id = %s",
                    (name, email, email_key, phone, address, description, party.updated_at, pid),
                )

        try:
            await self.db.transaction(write)
        except psycopg2.errors.UniqueViolation:
            raise EmailTaken(party.email) from None
        return party

    async def list(self, kind: Kind, query: str, after: int, limit: int,
                   owner: str | None = None) -> list[tuple[int, Party]]:
        def read(conn):
            with conn.cursor() as cur:
                where, args = "seq > %s", [after]
                if query:
                    where += " AND (lower(name) LIKE %s OR email_key LIKE %s)"
                    args += [like_pattern(query)] * 2
                if owner is not None:
                    where += " AND user_id = %s"
                    args.append(owner)
                cur.execute(f"SELECT {COLUMNS} FROM {TABLES[kind]} WHERE {where} ORDER BY seq LIMIT %s",
                            (*args, limit))
                return cur.fetchall()

        return [to_party(kind, row) for row in await self.db.transaction(read)]
