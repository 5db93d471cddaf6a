"""What SQL shared by a domain's PostgreSQL and SQLite adapters (its stores/sql.py) asks of each.

The shared base declares these; the kit's mixins give them (services/kit/stores/postgres.py and
sqlite.py: PostgresAdapter / SqliteAdapter for `_execute`, PostgresTransactions / SqliteTransactions
for `_transaction` and `_read`, PostgresTimes / SqliteTimes for the times and the newest-first cursor).
Put the mixins before the shared base in the adapter's bases, so they satisfy its abstract methods.
The SQL is written with %s placeholders.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


class SqlDialect(abc.ABC):
    @abc.abstractmethod
    async def _transaction(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(conn) in one transaction off the event loop."""

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        """Run fn(conn) off the event loop, for reading."""

    @abc.abstractmethod
    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        """Run one statement; a DB-API cursor."""


class SqlTimes(SqlDialect):
    """A dialect that also keeps times, and pages rows newest first by them."""

    @abc.abstractmethod
    def _db_time(self, at: datetime | None) -> Any:
        """A time as the dialect stores it."""

    @abc.abstractmethod
    def _py_time(self, value: Any) -> datetime | None:
        """A stored time back as a datetime."""

    @abc.abstractmethod
    def _cursor_time(self, at: datetime) -> str:
        """A time as the page cursor carries it."""

    @abc.abstractmethod
    def _older_than(self, created: str, row_id: str) -> tuple[str, list[Any]]:
        """The condition `(created_at, id) < the cursor's`, and its arguments."""

    async def _newest_first(self, select: str, where: Sequence[str], args: Sequence[Any], cursor: str,
                            limit: int, build: Callable[[Any], T]) -> tuple[list[T], str]:
        """One page of `select` (SELECT ... FROM ...) WHERE all of `where`, newest first (created_at DESC,
        id DESC), after `cursor`; the page's rows made by `build` (each has created_at and id) and the
        next page's cursor ('' on the last page). Runs on the dialect's `_read` and `_execute`."""
        where, args = [*where], [*args]
        if cursor:
            created, _, row_id = cursor.partition("|")
            older, more = self._older_than(created, row_id)
            where.append(older)
            args += more

        def read(conn: Any) -> tuple[list[T], str]:
            rows = self._execute(conn, f"{select} WHERE {' AND '.join(where)}"
                                       " ORDER BY created_at DESC, id DESC LIMIT %s",
                                 (*args, limit + 1)).fetchall()
            page = [build(r) for r in rows[:limit]]
            after = f"{self._cursor_time(page[-1].created_at)}|{page[-1].id}" if len(rows) > limit else ""
            return page, after

        return await self._read(read)
