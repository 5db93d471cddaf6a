"""Auctions on PostgreSQL, in the domain's own schema. READ COMMITTED: a racing bid's conditional
UPDATE waits for the winner's row lock, then finds the row changed and re-decides (see sql.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from services.auctions.stores.sql import SqlAuctionStore
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresAdapter, PostgresDatabase, PostgresTransactions
from services.kit.telemetry.metrics import timed_operations


@timed_operations
class PostgresAuctionStore(PostgresAdapter, PostgresTransactions, SqlAuctionStore):
    def __init__(self, url: str, *, schema: str = "auctions", max_connections: int = 8) -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=max_connections)
        self.outbox = PostgresOutbox()

    async def start(self) -> None:
        def create(conn: Any) -> None:
            self._lock_schema(conn, "auctions")
            self.create_schema(conn)

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)
