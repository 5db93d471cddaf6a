"""The store adapters' shared plumbing (services/kit/stores): what every domain's adapter inherits."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import psycopg2
import pytest
from prometheus_client import REGISTRY

from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.postgres import (
    PostgresAdapter,
    PostgresDatabase,
    PostgresTimes,
    PostgresTransactions,
)
from services.kit.stores.sql import SqlTimes
from services.kit.stores.sqlite import (
    SqliteAdapter,
    SqliteDatabase,
    SqliteTimes,
    SqliteTransactions,
    fixed_width_time,
    from_text_time,
)
from services.kit.telemetry.metrics import timed_operations


def _count(backend: str, operation: str) -> float:
    return REGISTRY.get_sample_value("agora_store_duration_seconds_count",
                                     {"backend": backend, "operation": operation, "outcome": "ok"}) or 0.0


class Row(NamedTuple):
    id: str
    created_at: datetime


class Dialect(SqlTimes):
    """Like a domain's shared SQL base (services/<domain>/stores/sql.py): the adapter supplies the rest."""

    async def put(self, row_id: str, at: datetime) -> None:
        await self._transaction(lambda conn: self._execute(
            conn, "INSERT INTO shelf (id, created_at) VALUES (%s, %s)", (row_id, self._db_time(at))))

    async def rows(self) -> list[Row]:
        found = await self._read(lambda conn: self._execute(
            conn, "SELECT id, created_at FROM shelf ORDER BY created_at, id").fetchall())
        return [self._row(r) for r in found]

    def _row(self, row: Any) -> Row:
        return Row(row[0], self._py_time(row[1]))

    async def page(self, cursor: str, limit: int) -> tuple[list[str], str]:
        rows, after = await self._newest_first("SELECT id, created_at FROM shelf", ["1 = 1"], [], cursor,
                                               limit, self._row)
        return [r.id for r in rows], after


@timed_operations
class SqliteShelf(SqliteAdapter, SqliteTransactions, SqliteTimes, Dialect):
    relay_busy_timeout = 1234

    def __init__(self, path: Any) -> None:
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox("shelf_outbox")

    async def start(self) -> None:
        await self._create_tables("CREATE TABLE IF NOT EXISTS shelf (id TEXT, created_at TEXT);")


@timed_operations
class PostgresShelf(PostgresAdapter, PostgresTransactions, PostgresTimes, Dialect):
    def __init__(self, url: str, schema: str) -> None:
        self.url, self.schema = url, schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=2)
        self.outbox = PostgresOutbox("shelf_outbox")

    async def start(self) -> None:
        def create(conn: Any) -> None:
            self._lock_schema(conn, "shelf")
            self._execute(conn, "CREATE TABLE IF NOT EXISTS shelf (id TEXT, created_at TIMESTAMPTZ)")

        await self.db.transaction(create)
        self._create_outbox()


def test_fixed_width_text_keeps_time_order_and_round_trips():
    early = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    late = early + timedelta(microseconds=7)
    assert fixed_width_time(early) == "2026-01-02T03:04:05.000000+00:00"
    assert len(fixed_width_time(early)) == len(fixed_width_time(late))
    assert fixed_width_time(early) < fixed_width_time(late)
    assert from_text_time(fixed_width_time(late)) == late
    assert fixed_width_time(None) is None
    assert from_text_time(None) is None and from_text_time("") is None


async def test_sqlite_adapter_gives_the_dialect_its_connection_plumbing(tmp_path):
    store = SqliteShelf(tmp_path / "shelf.db")
    try:
        await store.start()
        at = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
        await store.put("a", at + timedelta(seconds=1))
        await store.put("b", at)
        assert await store.rows() == [("b", at), ("a", at + timedelta(seconds=1))]
        await store.put("c", at)
        first, after = await store.page("", 2)
        assert (first, after) == (["a", "c"], "2026-05-06T07:08:09.123456+00:00|c")
        assert await store.page(after, 2) == (["b"], "")
        assert await store.ping() is True

        conn = store.relay_connection()  # its own connection to the same file
        try:
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 1234
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                  " AND name LIKE 'shelf%' ORDER BY name")
            assert [r[0] for r in tables.fetchall()] == ["shelf", "shelf_outbox"]
            assert conn.execute("SELECT id, created_at FROM shelf ORDER BY created_at, id").fetchall() == [
                ("b", "2026-05-06T07:08:09.123456+00:00"), ("c", "2026-05-06T07:08:09.123456+00:00"),
                ("a", "2026-05-06T07:08:10.123456+00:00")]
        finally:
            conn.close()
    finally:
        await store.close()


async def test_sqlite_relay_connection_passes_a_timeout_only_when_the_adapter_names_one(tmp_path):
    class Named(SqliteShelf):
        relay_timeout = 0.25
        relay_busy_timeout = None

    default, named = SqliteShelf(tmp_path / "a.db"), Named(tmp_path / "b.db")
    default.relay_busy_timeout = None
    try:
        for store, ms in ((default, 5000), (named, 250)):  # sqlite3.connect's own default is 5 s
            conn = store.relay_connection()
            try:
                assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == ms
            finally:
                conn.close()
    finally:
        await default.close()
        await named.close()


async def test_postgres_adapter_gives_the_dialect_its_schema_outbox_and_drop(postgres_url):
    schema = f"kit_adapter_{uuid.uuid4().hex[:8]}"
    store = PostgresShelf(postgres_url, schema)
    try:
        await store.start()
        at = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=timezone.utc)
        await store.put("a", at)
        assert await store.rows() == [("a", at)]
        await store.put("b", at)
        await store.put("c", at - timedelta(seconds=1))
        first, after = await store.page("", 2)
        assert (first, after) == (["b", "a"], f"{at.isoformat()}|a")
        assert await store.page(after, 2) == (["c"], "")
        assert await store.ping() is True

        conn = store.relay_connection()
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SHOW search_path")
                assert cur.fetchone()[0] == f"{schema},public"
                cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
                            " ORDER BY table_name", (schema,))
                assert [r[0] for r in cur.fetchall()] == ["shelf", "shelf_outbox"]
        finally:
            conn.close()

        before = _count("postgres", "PostgresShelf.drop")
        await store.drop()
        assert _count("postgres", "PostgresShelf.drop") == before + 1  # named by the adapter's class
        assert _schema_count(postgres_url, schema) == 0
    finally:
        await store.close()
        _schema_count(postgres_url, schema, drop=True)  # (left behind only when the test failed)


def _schema_count(url: str, schema: str, *, drop: bool = False) -> int:
    conn = psycopg2.connect(url, connect_timeout=3)
    try:
        with conn, conn.cursor() as cur:
            if drop:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,))
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("cls", [SqliteShelf, PostgresShelf])
def test_the_mixins_satisfy_the_shared_bases_abstract_methods(cls):
    assert not getattr(cls, "__abstractmethods__", None)
