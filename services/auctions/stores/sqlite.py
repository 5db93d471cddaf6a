"""Auctions on SQLite (the embedded default). One writer thread; BEGIN IMMEDIATE serialises bids."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from services.auctions.stores.sql import SqlAuctionStore
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteDatabase
from services.kit.telemetry.metrics import timed_operations


@timed_operations
class SqliteAuctionStore(SqlAuctionStore):
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox()

    async def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.transaction(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.run(fn)

    def _execute(self, conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return conn.execute(sql.replace("%s", "?"), tuple(args))

    async def start(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            self.create_schema(conn)
            self.outbox.create_schema(conn)

        await self.db.run(create)

    def relay_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
