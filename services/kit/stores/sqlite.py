"""The embedded database: one SQLite file per domain, used from one worker thread.

SQLite serialises writers anyway; one thread per file keeps the connection thread-confined
and keeps every statement off the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from services.kit.telemetry.metrics import store_operation, timed_store_call

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
