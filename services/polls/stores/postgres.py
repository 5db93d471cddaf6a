"""The real poll store on PostgreSQL: polls, votes, the outbox and final results, in the domain's schema.

The queries are sql.py's; here is the dialect: a batch of votes locks the polls it names (FOR UPDATE,
in id order), the closing clock skips polls another replica is closing (SKIP LOCKED), many rows
go in one statement (execute_values), JSON columns are JSONB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg2
from psycopg2.extras import Json, execute_values

from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresAdapter, PostgresDatabase
from services.kit.telemetry.metrics import timed_operations
from services.polls.stores.sql import SqlPollStore, schema

SCHEMA = schema("JSONB")


@timed_operations
class PostgresPollStore(PostgresAdapter, SqlPollStore):
    _LOCK = " FOR UPDATE"
    # SKIP LOCKED: another replica's clock closing the same polls right now takes them.
    _DUE = " ORDER BY id FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, schema: str = "polls", max_connections: int = 8) -> None:
        self.url, self.schema = url, schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=max_connections)
        self.outbox = PostgresOutbox("polls_outbox")
        self._ready = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the schema's tables if missing (idempotent; every replica runs it at start)."""
        async with self._lock:
            if self._ready:
                return

            def create() -> None:
                conn = self.relay_connection()
                lock = (f"{self.schema}.polls",)
                try:
                    # One replica at a time: concurrent CREATE ... IF NOT EXISTS can still collide.
                    with conn, conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", lock)
                    with conn, conn.cursor() as cur:
                        cur.execute(SCHEMA)
                    self.outbox.create_schema(conn)
                    with conn, conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", lock)
                finally:
                    conn.close()  # also releases the lock if anything above failed

            await asyncio.to_thread(create)
            self._ready = True

    def relay_connection(self) -> Any:
        """Its own: the schema made here if missing, then set as the search_path (no options)."""
        conn = psycopg2.connect(self.url, connect_timeout=3)
        with conn, conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(f'SET search_path TO "{self.schema}", public')
        return conn

    def _insert_rows(self, conn: Any, into: str, width: int, rows: Sequence[Sequence[Any]],
                     tail: str = "") -> None:
        with conn.cursor() as cur:
            execute_values(cur, f"INSERT INTO {into} VALUES %s{tail}", rows, page_size=1000)

    def _any(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    @staticmethod
    def _json(value: Any) -> Any:
        return Json(value)

    @staticmethod
    def _from_json(value: Any) -> Any:
        return value  # psycopg2 reads JSONB as Python values
