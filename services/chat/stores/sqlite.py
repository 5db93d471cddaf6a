"""The embedded chat store: one SQLite file, its outbox beside the tables."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from services.chat.stores.sql import Query, SqlChatStore, schema
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations

T = TypeVar("T")


@timed_operations
class SqliteChatStore(SqliteAdapter, SqlChatStore):
    relay_timeout = 5.0
    blob = "BLOB"
    lock_room = ""  # BEGIN IMMEDIATE: one writer at a time

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(self.path)
        self.outbox = SqliteOutbox("chat_outbox")

    def _query(self, conn: sqlite3.Connection) -> Query:
        return Query(conn, conn.cursor(), "?", self.outbox)

    async def _read(self, fn: Callable[[Query], T]) -> T:
        return await self.db.run(lambda conn: fn(self._query(conn)))

    async def _write(self, fn: Callable[[Query], T]) -> T:
        return await self.db.transaction(lambda conn: fn(self._query(conn)))

    async def start(self) -> None:
        def create(q: Query) -> None:
            for statement in schema(self.blob):
                q.run(statement)
            self.outbox.create_schema(q.conn)
            self._default_room(q, time.time())

        await self.db.run(lambda conn: create(self._query(conn)))

    async def prune_outbox(self, older_than: float) -> None:
        await self.db.run(lambda conn: self.outbox.prune(conn, older_than))
