"""The embedded database: one SQLite file per domain, used from one worker thread.

SQLite serialises writers anyway; one thread per file keeps the connection thread-confined
and keeps every statement off the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from services.kit.telemetry.metrics import store_operation, timed_operations, timed_store_call

T = TypeVar("T")


class SqliteDatabase:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1,
                                            thread_name_prefix=f"sqlite-{Path(self.path).stem}")
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.row_factory = sqlite3.Row
            self._conn = conn
        return self._conn

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, operation: str | None = None) -> T:
        """Run fn(conn) in the database thread (autocommit: fn manages any transaction).

        Timed as `operation` (default: the store method that called) in agora_store_duration_seconds;
        fn runs in a copy of the caller's context (request id, trace) for its log lines."""
        context = contextvars.copy_context()
        call = asyncio.get_running_loop().run_in_executor(
            self._executor, context.run, lambda: fn(self._connection()))
        return await timed_store_call("sqlite", operation or store_operation(), call)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T], *, operation: str | None = None) -> T:
        """Run fn(conn) inside BEGIN IMMEDIATE ... COMMIT (rolled back if fn raises)."""

        def tx(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self.run(tx, operation=operation or store_operation())

    async def ping(self) -> bool:
        return await self.run(lambda c: c.execute("SELECT 1").fetchone()[0] == 1, operation="ping")

    async def close(self) -> None:
        def shut(_: sqlite3.Connection) -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        if self._conn is not None:
            await self.run(shut, operation="close")
        self._executor.shutdown(wait=True)


@timed_operations
class SqliteAdapter:
    """The plumbing every SQLite store adapter shares, from `self.db` (a SqliteDatabase: its file is
    `self.db.path`). Put it first in the bases (it satisfies the shared SQL base's abstract `_execute`).

    The relay's connection is a plain one of its own; an adapter that wants sqlite3's `timeout=` said
    (`relay_timeout`) or a busy timeout set on it (`relay_busy_timeout`, ms) names it."""

    db: SqliteDatabase
    relay_timeout: float | None = None  # None: sqlite3.connect's own default
    relay_busy_timeout: int | None = None  # None: no PRAGMA busy_timeout on the relay's connection

    def relay_connection(self) -> sqlite3.Connection:
        options: dict[str, Any] = {} if self.relay_timeout is None else {"timeout": self.relay_timeout}
        conn = sqlite3.connect(self.db.path, **options, check_same_thread=False)
        if self.relay_busy_timeout is not None:
            conn.execute(f"PRAGMA busy_timeout={self.relay_busy_timeout}")
        return conn

    def _execute(self, conn: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return conn.execute(sql.replace("%s", "?"), tuple(args))  # the shared SQL is written with %s

    async def _create_tables(self, tables: str | Callable[[sqlite3.Connection], Any]) -> None:
        """The adapter's tables (a script, or fn(conn) that makes them), then `self.outbox`'s, in one call
        on the database thread (timed as the method that called: `start`)."""

        def create(conn: sqlite3.Connection) -> None:
            if isinstance(tables, str):
                conn.executescript(tables)
            else:
                tables(conn)
            self.outbox.create_schema(conn)

        await self.db.run(create)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()


class SqliteTransactions:
    """`_transaction(fn)` (BEGIN IMMEDIATE ... COMMIT) and `_read(fn)` (autocommit) of a shared SQL base."""

    db: SqliteDatabase

    async def _transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.transaction(fn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await self.db.run(fn)


def fixed_width_time(at: datetime | None) -> str | None:
    """A UTC time as fixed-width text, so text order is time order (None stays None)."""
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if at is not None else None


def from_text_time(value: str | None) -> datetime | None:
    """Stored ISO text back as a datetime (empty or None: None)."""
    return datetime.fromisoformat(value) if value else None


class SqliteTimes:
    """Times as a shared SQL base keeps them on SQLite (services/kit/stores/sql.py's SqlTimes):
    fixed-width text in columns and page cursors."""

    def _db_time(self, at: datetime | None) -> str | None:
        return fixed_width_time(at)

    def _py_time(self, value: str | None) -> datetime | None:
        return from_text_time(value)

    def _cursor_time(self, at: datetime) -> str:
        return fixed_width_time(at)

    def _older_than(self, created: str, row_id: str) -> tuple[str, list[Any]]:
        """The newest-first page cursor's condition `(created_at, id) < the cursor's`, and its arguments."""
        return "(created_at < %s OR (created_at = %s AND id < %s))", [created, created, row_id]
