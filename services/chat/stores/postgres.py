"""The real chat store: PostgreSQL tables in the domain's own schema, with the outbox beside them."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from services.chat.stores.sql import Query, SqlChatStore, schema
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.errors import Unavailable
from services.kit.stores.postgres import PostgresAdapter, PostgresDatabase
from services.kit.telemetry.metrics import timed_operations

T = TypeVar("T")


@timed_operations
class PostgresChatStore(PostgresAdapter, SqlChatStore):
    blob = "BYTEA"
    lock_room = " FOR UPDATE"  # the room row carries the sequence: writers to one room queue here

    def __init__(self, url: str, *, schema: str = "chat", max_connections: int = 8) -> None:
        self.url, self.schema = url, schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=max_connections)
        self.outbox = PostgresOutbox("chat_outbox")

    def _query(self, conn: psycopg2.extensions.connection) -> Query:
        return Query(conn, conn.cursor(), "%s", self.outbox)

    async def _read(self, fn: Callable[[Query], T]) -> T:
        try:
            return await self.db.transaction(lambda conn: fn(self._query(conn)))
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise Unavailable(
                f"the chat database does not answer ({type(exc).__name__}); retry shortly") from None

    _write = _read  # every call is one transaction

    async def start(self) -> None:
        import asyncio
        import time

        def create() -> None:
            conn = self.relay_connection()  # the schema's own, as the relay's and the prune's
            try:
                # Two replicas starting together must not race on CREATE TABLE IF NOT EXISTS:
                # a session lock (released when the connection closes) covers both steps.
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_lock(hashtext(%s))",
                                (f"agora.chat.schema.{self.schema}",))
                    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                with conn:
                    q = self._query(conn)
                    for statement in schema(self.blob):
                        q.run(statement)
                    self._default_room(q, time.time())
                self.outbox.create_schema(conn)
            finally:
                conn.close()

        await asyncio.to_thread(create)
        await self.db.ping()  # opens the pool (its own CREATE SCHEMA IF NOT EXISTS is a no-op now)

    async def prune_outbox(self, older_than: float) -> None:
        import asyncio

        def prune() -> None:
            conn = self.relay_connection()  # the outbox manages its own transaction on a plain connection
            try:
                self.outbox.prune(conn, older_than)
            finally:
                conn.close()

        await asyncio.to_thread(prune)
