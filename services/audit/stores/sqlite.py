"""Audit on SQLite (embedded): one events table indexed like the Cassandra layout (day, type, time)."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from services.audit.domain import AuditEvent, Cursor, TypePattern, epoch_ms, now
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    day TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    payload TEXT NOT NULL,
    payload_type TEXT NOT NULL,
    headers TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_day_type ON events (day, type, occurred_at, sequence);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at, sequence);
"""
_COLUMNS = "sequence, id, type, source, key, occurred_at, recorded_at, payload, payload_type, headers"


def _time(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def to_event(row) -> AuditEvent:
    seq, eid, type, source, key, occurred, recorded, payload, payload_type, headers = tuple(row)
    return AuditEvent(id=eid, type=type, source=source, key=key, occurred_at=_time(occurred),
                      recorded_at=_time(recorded), payload=json.loads(payload), payload_type=payload_type,
                      headers=json.loads(headers), sequence=seq)


@timed_operations
class SqliteAuditStore(SqliteAdapter):
    # No outbox (audit publishes nothing): the kit's relay_connection goes unused.
    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path)

    async def start(self) -> None:
        await self.db.run(lambda c: c.executescript(_SCHEMA))

    async def last_sequence(self) -> int:
        return await self.db.run(
            lambda c: c.execute("SELECT coalesce(max(sequence), 0) FROM events").fetchone()[0])

    async def record(self, event: AuditEvent) -> tuple[AuditEvent, bool]:
        def write(conn: sqlite3.Connection) -> tuple[AuditEvent, bool]:
            cur = conn.execute(
                "INSERT OR IGNORE INTO events (id, day, type, source, key, occurred_at, recorded_at, payload,"
                " payload_type, headers) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (event.id, event.day, event.type, event.source, event.key, epoch_ms(event.occurred_at),
                 epoch_ms(now()), json.dumps(event.payload), event.payload_type, json.dumps(event.headers)))
            row = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?", (event.id,)).fetchone()
            return to_event(row), cur.rowcount == 1

        return await self.db.transaction(write)

    async def get(self, event_id: str) -> AuditEvent | None:
        row = await self.db.run(lambda c: c.execute(f"SELECT {_COLUMNS} FROM events WHERE id = ?",
                                                    (event_id,)).fetchone())
        return to_event(row) if row else None

    async def query(self, start, end, pattern: TypePattern | None, key: str, source: str,
                    after: Cursor | None, limit: int) -> list[AuditEvent]:
        where, args = ["occurred_at >= ?", "occurred_at < ?"], [epoch_ms(start), epoch_ms(end)]
        if after is not None:
            where.append("(occurred_at > ? OR (occurred_at = ? AND sequence > ?))")
            args += [after[0], after[0], after[1]]
        if pattern is not None:
            where.append("type = ?" if pattern.exact else "type LIKE ? ESCAPE '\\'")
            args.append(pattern.text if pattern.exact else pattern.like())
        if key:
            where.append("key = ?")
            args.append(key)
        if source:
            where.append("source = ?")
            args.append(source)
        sql = (f"SELECT {_COLUMNS} FROM events WHERE {' AND '.join(where)}"
               " ORDER BY occurred_at, sequence LIMIT ?")
        rows = await self.db.run(lambda c: c.execute(sql, (*args, limit)).fetchall())
        return [to_event(r) for r in rows]

    async def since(self, after: int, upto: int) -> list[AuditEvent]:
        rows = await self.db.run(lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM events WHERE sequence > ? AND sequence <= ? ORDER BY sequence",
            (after, upto)).fetchall())
        return [to_event(r) for r in rows]
