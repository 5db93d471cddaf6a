"""Auctions on SQLite (the embedded default). One writer thread; BEGIN IMMEDIATE serialises bids."""

from __future__ import annotations

from pathlib import Path

from services.auctions.stores.sql import SqlAuctionStore
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase, SqliteTransactions
from services.kit.telemetry.metrics import timed_operations


@timed_operations
class SqliteAuctionStore(SqliteAdapter, SqliteTransactions, SqlAuctionStore):
    relay_busy_timeout = 5000

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox()

    async def start(self) -> None:
        await self._create_tables(self.create_schema)
