"""PostgreSQL through psycopg2: a thread pool sized to the connection pool, one transaction per call."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from services.kit.telemetry.metrics import store_operation, timed_operations, timed_store_call

T = TypeVar("T")


class PostgresDatabase:
    def __init__(self, url: str, *, max_connections: int = 8, connect_timeout: int = 3,
                 schema: str | None = None) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        # Each domain may keep its tables in its own schema (search_path), so one server hosts all.
        self.schema = schema
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._executor = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="postgres")

    def _open_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        if self._pool is None:
            options = f"-c search_path={self.schema},public" if self.schema else None
            # Open connections as they are needed (ten services x eight eager connections would
            # exhaust a default PostgreSQL's 100), then keep up to max_connections idle: psycopg2
            # closes a returned connection once minconn are idle, so minconn is raised after start.
            self._pool = psycopg2.pool.ThreadedConnectionPool(
                0, self.max_connections, self.url, connect_timeout=self.connect_timeout, options=options,
            )
            self._pool.minconn = self.max_connections
            if self.schema:
                conn = self._pool.getconn()
                try:
                    with conn, conn.cursor() as cur:
                        # Two processes starting on a fresh database would race on CREATE SCHEMA.
                        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                                    (f"agora-schema:{self.schema}",))
                        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                finally:
                    self._pool.putconn(conn)
        return self._pool

    def _call(self, fn: Callable[[psycopg2.extensions.connection], T]) -> T:
        pool = self._open_pool()
        conn = pool.getconn()
        broken = False
        try:
            with conn:  # commits on success, rolls back on error
                return fn(conn)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True  # server went away: don't hand this connection out again
            raise
        finally:
            pool.putconn(conn, close=broken or conn.closed != 0)

    async def transaction(self, fn: Callable[[psycopg2.extensions.connection], T], *,
                          operation: str | None = None) -> T:
        """Run fn(conn) in a worker thread inside one transaction (in a copy of the caller's context),
        timed as `operation` (default: the store method that called) in agora_store_duration_seconds."""
        context = contextvars.copy_context()
        call = asyncio.get_running_loop().run_in_executor(self._executor, context.run, self._call, fn)
        return await timed_store_call("postgres", operation or store_operation(), call)

    async def ping(self) -> bool:
        def probe(conn) -> bool:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                return cur.fetchone()[0] == 1

        return await self.transaction(probe, operation="ping")

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None
        self._executor.shutdown(wait=False)


@timed_operations
class PostgresAdapter:
    """The plumbing every PostgreSQL store adapter shares, from `self.url`, `self.schema` (the domain's
    own), `self.db` (a PostgresDatabase) and, for the outbox, `self.outbox`. Put it first in the bases
    (it satisfies the shared SQL base's abstract `_execute`); an adapter that differs overrides."""

    url: str
    schema: str
    db: PostgresDatabase
    outbox: Any

    def relay_connection(self) -> psycopg2.extensions.connection:
        """A plain connection of its own in the schema (the outbox manages its transactions)."""
        return psycopg2.connect(self.url, connect_timeout=3, options=f"-c search_path={self.schema},public")

    def _lock_schema(self, conn: Any, name: str) -> None:
        """Two replicas starting at once must not race on CREATE TABLE: a transaction's advisory lock on
        `<schema>.<name>.schema`, taken before the tables are made in the same transaction."""
        self._execute(conn, "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{self.schema}.{name}.schema",))

    def _create_outbox(self) -> None:
        conn = self.relay_connection()  # the outbox's DDL commits on its own connection
        try:
            self.outbox.create_schema(conn)
        finally:
            conn.close()

    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, tuple(args))
        return cur

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        """Remove the whole schema (tests)."""
        await self.db.transaction(
            lambda conn: self._execute(conn, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))


class PostgresTransactions:
    """`_transaction(fn)` and `_read(fn)` of a shared SQL base: both one transaction on `self.db`."""

    db: PostgresDatabase

    async def _transaction(self, fn: Callable[[Any], Any]) -> Any:
        return await self.db.transaction(fn)

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        return await self.db.transaction(fn)


class PostgresTimes:
    """Times as a shared SQL base keeps them on PostgreSQL (services/kit/stores/sql.py's SqlTimes):
    TIMESTAMPTZ columns take and give datetimes; a page cursor carries the ISO text."""

    def _db_time(self, at: datetime | None) -> datetime | None:
        return at

    def _py_time(self, value: datetime | None) -> datetime | None:
        return value

    def _cursor_time(self, at: datetime) -> str:
        return at.isoformat()

    def _older_than(self, created: str, row_id: str) -> tuple[str, list[Any]]:
        """The newest-first page cursor's condition `(created_at, id) < the cursor's`, and its arguments."""
        return "(created_at, id) < (%s::timestamptz, %s)", [created, row_id]
