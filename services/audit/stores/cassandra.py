"""Audit on Cassandra: a time series partitioned by (day, type) (CQL valid on 2.1/protocol v3 and 4.x/5.x).

- events_by_day_type ((day, type), occurred_at, sequence): QueryEvents reads the partitions of the
  days in range whose types match, merged in (occurred_at, sequence) order.
- types_by_day (day, type): which type partitions a day has.
- events_by_id (id): the idempotency key (INSERT ... IF NOT EXISTS) and GetEvent's lookup.
- events_by_sequence (bucket = sequence / 100000, sequence): WatchEvents replay by sequence.
- Headers are JSON text, not map<text, text>: Cassandra 2.1 on current JVMs fails to prepare
  statements over map columns.
- audit_sequence: hands out blocks of sequences (compare-and-set), so one process numbers its
  events densely without a round trip per event.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import threading
from datetime import datetime, timezone

from cassandra.query import BatchStatement, BatchType

from services.audit.domain import AuditEvent, Cursor, TypePattern, days_between, epoch_ms, now
from services.kit.config import Settings
from services.kit.stores.cassandra import CassandraAdapter, CassandraDatabase
from services.kit.telemetry.metrics import timed_operations

BUCKET = 100_000
BLOCK = 1000
_EVENT_COLUMNS = ("id text, type text, source text, key text, occurred_at timestamp, recorded_at timestamp,"
                  " payload text, payload_type text, headers text")
SCHEMA = [
    (f"CREATE TABLE IF NOT EXISTS events_by_day_type (day text, sequence bigint, {_EVENT_COLUMNS},"
    " PRIMARY KEY ((day, type), occurred_at, sequence))"),
    "CREATE TABLE IF NOT EXISTS types_by_day (day text, type text, PRIMARY KEY (day, type))",
    ("CREATE TABLE IF NOT EXISTS events_by_id (id text PRIMARY KEY, day text, type text,"
    " occurred_at timestamp, sequence bigint)"),
    (f"CREATE TABLE IF NOT EXISTS events_by_sequence (bucket bigint, sequence bigint, {_EVENT_COLUMNS},"
    " PRIMARY KEY (bucket, sequence))"),
    "CREATE TABLE IF NOT EXISTS audit_sequence (name text PRIMARY KEY, next bigint)",
]
TABLES = ("events_by_day_type", "types_by_day", "events_by_id", "events_by_sequence", "audit_sequence")
_FIELDS = "id, type, source, key, occurred_at, recorded_at, payload, payload_type, headers, sequence"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def to_event(r) -> AuditEvent:
    return AuditEvent(id=r.id, type=r.type, source=r.source or "", key=r.key or "",
                      occurred_at=_utc(r.occurred_at), recorded_at=_utc(r.recorded_at),
                      payload=json.loads(r.payload or "{}"), payload_type=r.payload_type or "",
                      headers=json.loads(r.headers or "{}"), sequence=r.sequence)


def _pages(result):
    """A result's rows, fetching the next page only when needed. (Iterating several ResultSets at
    once directly, as heapq.merge does, yields another set's rows from an empty one.)"""
    while True:
        yield from list(result.current_rows)
        if not result.has_more_pages:
            return
        result.fetch_next_page()


@timed_operations
class CassandraAuditStore(CassandraAdapter):
    def __init__(self, settings: Settings) -> None:
        self.db = CassandraDatabase(settings)
        self._session = None
        self._lock = threading.Lock()
        self._next = 0
        self._block_end = 0

    async def start(self) -> None:
        self._session = await self._create_tables(SCHEMA)

    def _prepare(self, s) -> None:
        self._claim_id = s.prepare(
            "INSERT INTO events_by_id (id, day, type, occurred_at) VALUES (?, ?, ?, ?) IF NOT EXISTS")
        self._read_id = s.prepare("SELECT day, type, occurred_at, sequence FROM events_by_id WHERE id = ?")
        self._set_id_seq = s.prepare("UPDATE events_by_id SET sequence = ? WHERE id = ?")
        self._insert_series = s.prepare(
            f"INSERT INTO events_by_day_type (day, {_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._insert_type = s.prepare("INSERT INTO types_by_day (day, type) VALUES (?, ?)")
        self._insert_by_seq = s.prepare(
            f"INSERT INTO events_by_sequence (bucket, {_FIELDS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._read_one = s.prepare(
            f"SELECT {_FIELDS} FROM events_by_day_type WHERE day = ? AND type = ? AND occurred_at = ?"
            " AND sequence = ?")
        self._read_types = s.prepare("SELECT type FROM types_by_day WHERE day = ?")
        self._read_range = s.prepare(
            f"SELECT {_FIELDS} FROM events_by_day_type WHERE day = ? AND type = ? AND occurred_at >= ?"
            " AND occurred_at < ?")
        self._read_by_seq = s.prepare(
            f"SELECT {_FIELDS} FROM events_by_sequence WHERE bucket = ? AND sequence > ? AND sequence <= ?")
        self._read_block = s.prepare("SELECT next FROM audit_sequence WHERE name = 'events'")
        self._first_block = s.prepare(
            "INSERT INTO audit_sequence (name, next) VALUES ('events', ?) IF NOT EXISTS")
        self._next_block = s.prepare("UPDATE audit_sequence SET next = ? WHERE name = 'events' IF next = ?")

    # -- sequences: blocks claimed with compare-and-set, handed out in order under a lock

    def _claim_block(self) -> None:
        s = self._session
        while True:
            row = s.execute(self._read_block).one()
            if row is None:
                if s.execute(self._first_block, (1 + BLOCK,)).was_applied:
                    self._next, self._block_end = 1, 1 + BLOCK
                    return
            elif s.execute(self._next_block, (row.next + BLOCK, row.next)).was_applied:
                self._next, self._block_end = row.next, row.next + BLOCK
                return

    def _allocate(self) -> int:
        with self._lock:
            if self._next >= self._block_end:
                self._claim_block()
            seq = self._next
            self._next += 1
            return seq

    async def last_sequence(self) -> int:
        def peek() -> int:
            with self._lock:
                if self._next >= self._block_end:
                    self._claim_block()
                return self._next - 1

        return await asyncio.to_thread(peek)

    # -- writes and reads

    def _read(self, event_id: str) -> AuditEvent | None:
        ref = self._session.execute(self._read_id, (event_id,)).one()
        if ref is None or ref.sequence is None:
            return None
        row = self._session.execute(self._read_one, (ref.day, ref.type, ref.occurred_at, ref.sequence)).one()
        return to_event(row) if row else None

    async def record(self, event: AuditEvent) -> tuple[AuditEvent, bool]:
        def write() -> tuple[AuditEvent, bool]:
            s = self._session
            claim = (event.id, event.day, event.type, event.occurred_at)
            if not s.execute(self._claim_id, claim).was_applied:
                earlier = self._read(event.id)
                if earlier is not None:
                    return earlier, False
                # claimed but never completed (a crash between the two writes): complete it now
            seq = self._allocate()
            recorded = now()
            values = (event.id, event.type, event.source, event.key, event.occurred_at, recorded,
                      json.dumps(event.payload), event.payload_type, json.dumps(event.headers), seq)
            batch = BatchStatement(batch_type=BatchType.LOGGED)
            batch.add(self._insert_series, (event.day, *values))
            batch.add(self._insert_type, (event.day, event.type))
            batch.add(self._insert_by_seq, (seq // BUCKET, *values))
            batch.add(self._set_id_seq, (seq, event.id))
            s.execute(batch, timeout=10)
            return AuditEvent(**{**event.__dict__, "recorded_at": recorded, "sequence": seq}), True

        return await asyncio.to_thread(write)

    async def get(self, event_id: str) -> AuditEvent | None:
        return await asyncio.to_thread(self._read, event_id)

    async def query(self, start, end, pattern: TypePattern | None, key: str, source: str,
                    after: Cursor | None, limit: int) -> list[AuditEvent]:
        def read() -> list[AuditEvent]:
            s = self._session
            low = start
            if after is not None:
                low = max(start, datetime.fromtimestamp(after[0] / 1000, tz=timezone.utc))
            streams = []
            for day in days_between(low, end):
                for row in s.execute(self._read_types, (day,)):
                    if pattern is None or pattern.matches(row.type):
                        statement = self._read_range.bind((day, row.type, low, end))
                        statement.fetch_size = limit + 20
                        streams.append(_pages(s.execute(statement, timeout=10)))
            out: list[AuditEvent] = []
            for r in heapq.merge(*streams, key=lambda r: (r.occurred_at, r.sequence)):
                if after is not None and (epoch_ms(_utc(r.occurred_at)), r.sequence) <= after:
                    continue
                if (key and r.key != key) or (source and r.source != source):
                    continue
                out.append(to_event(r))
                if len(out) >= limit:
                    break
            return out

        return await asyncio.to_thread(read)

    async def since(self, after: int, upto: int) -> list[AuditEvent]:
        def read() -> list[AuditEvent]:
            out: list[AuditEvent] = []
            for bucket in range(after // BUCKET, upto // BUCKET + 1):
                out += [to_event(r) for r in self._session.execute(self._read_by_seq, (bucket, after, upto))]
            return out

        return await asyncio.to_thread(read)

    async def truncate(self) -> None:
        """Empty every table (tests: the schema is made once per session)."""
        await self._truncate(TABLES)
        with self._lock:
            self._next = self._block_end = 0
