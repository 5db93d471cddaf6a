"""Outbox and inbox tables on SQLite (sqlite3): the embedded producers' and consumers' side of the bus.

The `add` and `claim` calls run on the caller's connection inside the caller's transaction and
never commit: committing is the caller's state change, and the event or the inbox mark commits
with it or not at all.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

from agora.events.v1.envelope_pb2 import Envelope

# unixepoch('subsec') needs SQLite 3.42; julianday works on every SQLite Python ships with.
_NOW = "((julianday('now') - 2440587.5) * 86400.0)"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _table(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"table name {name!r}: lowercase letters, digits and '_' only")
    return name


class SqliteOutbox:
    """Events waiting to be relayed to the bus, written in the producer's own transaction."""

    def __init__(self, table: str = "agora_outbox") -> None:
        self.table = _table(table)

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {self.table} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                event_id TEXT NOT NULL,
                type TEXT NOT NULL,
                body BLOB NOT NULL,
                created_at REAL NOT NULL DEFAULT {_NOW},
                sent_at REAL
            );
            CREATE INDEX IF NOT EXISTS {self.table}_unsent ON {self.table} (seq) WHERE sent_at IS NULL;
            """
        )

    def add(self, conn: sqlite3.Connection, envelopes: Sequence[Envelope]) -> None:
        """Record events in the caller's open transaction (the caller commits)."""
        conn.executemany(
            f"INSERT INTO {self.table} (event_id, type, body) VALUES (?, ?, ?)",
            [(e.id, e.type, e.SerializeToString()) for e in envelopes],
        )

    # -- the relay's side, on its own connection

    def claim(self, conn: sqlite3.Connection, limit: int) -> list[tuple[int, bytes]]:
        """The oldest unsent events. SQLite has one writer, so one relay per file: no row locks needed."""
        return conn.execute(
            f"SELECT seq, body FROM {self.table} WHERE sent_at IS NULL ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()

    def mark_sent(self, conn: sqlite3.Connection, seqs: Sequence[int]) -> None:
        with conn:
            conn.executemany(
                f"UPDATE {self.table} SET sent_at = {_NOW} WHERE seq = ?", [(s,) for s in seqs]
            )

    def release(self, conn: sqlite3.Connection) -> None:
        conn.rollback()

    def unsent(self, conn: sqlite3.Connection) -> int:
        return conn.execute(f"SELECT count(*) FROM {self.table} WHERE sent_at IS NULL").fetchone()[0]

    def prune(self, conn: sqlite3.Connection, older_than: float) -> int:
        """Forget events relayed more than `older_than` seconds ago."""
        with conn:
            cursor = conn.execute(
                f"DELETE FROM {self.table} WHERE sent_at < {_NOW} - ?", (older_than,)
            )
        return cursor.rowcount


class SqliteInbox:
    """Event ids a consumer group has already applied, marked in the same transaction as the effect."""

    def __init__(self, table: str = "agora_inbox") -> None:
        self.table = _table(table)

    def create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {self.table} (
                group_name TEXT NOT NULL,
                event_id TEXT NOT NULL,
                processed_at REAL NOT NULL DEFAULT {_NOW},
                PRIMARY KEY (group_name, event_id)
            ) WITHOUT ROWID;
            """
        )

    def claim(self, conn: sqlite3.Connection, group: str, event_id: str) -> bool:
        """True the first time `group` sees `event_id` (apply the effect); False for a redelivery."""
        cursor = conn.execute(
            f"INSERT OR IGNORE INTO {self.table} (group_name, event_id) VALUES (?, ?)", (group, event_id)
        )
        return cursor.rowcount == 1
