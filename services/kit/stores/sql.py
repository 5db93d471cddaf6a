"""What SQL shared by a domain's PostgreSQL and SQLite adapters (its stores/sql.py) asks of each.

The shared base declares these; the kit's mixins give them (services/kit/stores/postgres.py and
sqlite.py: PostgresAdapter / SqliteAdapter for `_execute`, PostgresTransactions / SqliteTransactions
for `_transaction` and `_read`, PostgresTimes / SqliteTimes for the times and the newest-first cursor).
The SQL is written with %s placeholders.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any


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


class SqlTimes(abc.ABC):
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
