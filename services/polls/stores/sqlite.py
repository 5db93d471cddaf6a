"""The embedded adapters: polls, votes, outbox, final results and live tallies in one SQLite file.

The poll store's queries are sql.py's; here is SQLite's dialect (one writer: BEGIN IMMEDIATE
serialises the transactions that lock a poll elsewhere; JSON columns are TEXT).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.polls.domain import Tally, TallyChange
from services.polls.stores.sql import SqlPollStore, schema

SCHEMA = schema("TEXT", " WITHOUT ROWID")
TALLY_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_tallies (
    poll_id TEXT PRIMARY KEY,
    counts TEXT NOT NULL,
    applied TEXT NOT NULL,
    version INTEGER NOT NULL,
    closed_total INTEGER,
    final INTEGER NOT NULL DEFAULT 0
);
"""


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


@timed_operations
class SqlitePollStore(SqliteAdapter, SqlPollStore):
    relay_timeout = 5.0
    relay_busy_timeout = 5000
    _DUE = " ORDER BY closes_at"

    def __init__(self, path: str | SqliteDatabase) -> None:
        self.db = path if isinstance(path, SqliteDatabase) else SqliteDatabase(path)
        self.outbox = SqliteOutbox("polls_outbox")
        self._ready = False

    async def start(self) -> None:
        await self._create_tables(SCHEMA)
        self._ready = True

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        if not self._ready:
            await self.start()
        return await self.db.run(fn)

    def _insert_rows(self, conn: sqlite3.Connection, into: str, width: int, rows: Sequence[Sequence[Any]],
                     tail: str = "") -> None:
        conn.executemany(f"INSERT INTO {into} VALUES ({_in(range(width))}){tail}", rows)

    def _any(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join(['%s'] * len(values))})", list(values)

    @staticmethod
    def _json(value: Any) -> str:
        return json.dumps(value)

    @staticmethod
    def _from_json(value: Any) -> Any:
        return json.loads(value)


@timed_operations
class SqliteTallyStore(SqliteAdapter):
    """Live tallies in SQLite. `changes()` reports the writes of this process: the embedded mode
    is one process, so that is every write."""

    def __init__(self, path: str | SqliteDatabase) -> None:
        self.db = path if isinstance(path, SqliteDatabase) else SqliteDatabase(path)
        self._ready = False
        self._listeners: weakref.WeakSet[asyncio.Queue] = weakref.WeakSet()

    async def start(self) -> None:
        await self.db.run(lambda conn: conn.executescript(TALLY_SCHEMA))
        self._ready = True

    async def _conn(self) -> None:
        if not self._ready:
            await self.start()

    @staticmethod
    def _tally(row: Any) -> Tally:
        return Tally(row[0], {int(k): v for k, v in json.loads(row[1]).items()},
                     tuple(tuple(r) for r in json.loads(row[2])), row[3], row[4], bool(row[5]))

    async def load(self, poll_ids: Sequence[str]) -> dict[str, Tally]:
        if not poll_ids:
            return {}
        await self._conn()
        ids = list(poll_ids)
        rows = await self.db.run(lambda conn: conn.execute(
            f"SELECT poll_id, counts, applied, version, closed_total, final FROM live_tallies "
            f"WHERE poll_id IN ({_in(ids)})", ids).fetchall())
        return {row[0]: self._tally(row) for row in rows}

    async def commit(self, changes: Sequence[TallyChange]) -> set[str]:
        def write(conn: sqlite3.Connection) -> tuple[set[str], list[Tally]]:
            refused: set[str] = set()
            written: list[Tally] = []
            for change in changes:
                row = conn.execute(
                    "SELECT poll_id, counts, applied, version, closed_total, final FROM live_tallies "
                    "WHERE poll_id = ?", (change.poll_id,)).fetchone()
                before = self._tally(row) if row else Tally(change.poll_id)
                if before.version != change.base:
                    refused.add(change.poll_id)
                    continue
                after = change.result(before)
                conn.execute(
                    "INSERT INTO live_tallies (poll_id, counts, applied, version, closed_total, final) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT (poll_id) DO UPDATE SET counts = excluded.counts, "
                    "applied = excluded.applied, version = excluded.version, "
                    "closed_total = excluded.closed_total, final = excluded.final",
                    (after.poll_id, json.dumps({str(k): v for k, v in after.counts.items()}),
                     json.dumps([list(r) for r in after.applied]), after.version, after.closed_total,
                     int(after.final)))
                written.append(after)
            return refused, written

        await self._conn()
        refused, written = await self.db.transaction(write)
        for queue in list(self._listeners):
            for tally in written:
                if queue.full():
                    queue.get_nowait()  # a snapshot feed: the oldest change is the one to lose
                queue.put_nowait(tally)
        return refused

    async def changes(self) -> AsyncIterator[Tally]:
        queue: asyncio.Queue[Tally] = asyncio.Queue(maxsize=10_000)
        self._listeners.add(queue)
        while True:
            yield await queue.get()
