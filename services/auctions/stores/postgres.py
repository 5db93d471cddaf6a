"""Auctions on PostgreSQL, in the domain's own schema. READ COMMITTED: a racing bid's conditional
UPDATE waits for the winner's row lock, then finds the row changed and re-decides (see sql.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2

from services.auctions.stores.sql import SqlAuctionStore
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresDatabase
from services.kit.telemetry.metrics import timed_operations


@timed_operations
class PostgresAuctionStore(SqlAuctionStore):
    def __init__(self, url: str, *, schema: str = "auctions", max_connections: int = 8) -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=max_connections)
        self.outbox = PostgresOutbox()

    async def _transaction(self, fn: Callable[[Any], Any]) -> Any:
        return await self.db.transaction(fn)

    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, tuple(args))
        return cur

    async def start(self) -> None:
        def create(conn: Any) -> None:
            # Two replicas starting at once must not race on CREATE TABLE.
            self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext(%s))",
                          (f"{self.schema}.auctions.schema",))
            self.create_schema(conn)

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)

    def _create_outbox(self) -> None:
        conn = self.relay_connection()  # the outbox's DDL commits on its own connection
        try:
            self.outbox.create_schema(conn)
        finally:
            conn.close()

    def relay_connection(self) -> Any:
        return psycopg2.connect(self.url, connect_timeout=3, options=f"-c search_path={self.schema},public")

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        """Remove the whole schema (tests)."""
        await self.db.transaction(
            lambda conn: self._execute(conn, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
