"""What the bus tests share: unique names, bounded waits, and a consumer's SQLite store with an inbox."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.stores.sqlite import SqliteInbox


def unique(stem: str) -> str:
    return f"t{uuid.uuid4().hex[:10]}-{stem}"


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll until `predicate()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


class EffectStore:
    """A consumer's database: one `effects` row per applied event, deduplicated by an inbox.

    Effects has no unique constraint on purpose: a second effect for an event would show up
    as an extra row, so count(*) == count(distinct event_id) proves the inbox worked."""

    def __init__(self, path: Path, group: str, *, apply_delay: float = 0.0) -> None:
        self.path, self.group, self.apply_delay = path, group, apply_delay
        self._local = threading.local()
        self.inbox = SqliteInbox()
        with self._conn() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            self.inbox.create_schema(conn)
            conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT NOT NULL, value TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS duplicates (event_id TEXT NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def apply(self, envelope: Envelope, value: str = "") -> bool:
        """The consumer's effect and its inbox mark in one transaction; False for a redelivery."""
        conn = self._conn()
        with conn:
            if not self.inbox.claim(conn, self.group, envelope.id):
                conn.execute("INSERT INTO duplicates VALUES (?)", (envelope.id,))
                return False
            if self.apply_delay:
                time.sleep(self.apply_delay)
            conn.execute("INSERT INTO effects VALUES (?, ?)", (envelope.id, value))
            return True

    def counts(self) -> tuple[int, int]:
        """(effects, distinct events with an effect)."""
        row = self._conn().execute("SELECT count(*), count(DISTINCT event_id) FROM effects").fetchone()
        return row[0], row[1]

    def duplicates(self) -> int:
        return self._conn().execute("SELECT count(*) FROM duplicates").fetchone()[0]
