"""Outbox and inbox tables on PostgreSQL (psycopg2): the real producers' and consumers' side of the bus.

`add` and `claim` take the caller's connection (or cursor) inside the caller's transaction and
never commit. The relay claims rows with FOR UPDATE SKIP LOCKED, so several relay replicas share
one outbox without sending the same row twice in the normal case.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agora.events.v1.envelope_pb2 import Envelope
from psycopg2.extras import execute_values

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _table(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"table name {name!r}: lowercase letters, digits and '_' only")
    return name


def _cursor(conn_or_cursor: Any) -> Any:
    return conn_or_cursor.cursor() if hasattr(conn_or_cursor, "cursor") else conn_or_cursor


class PostgresOutbox:
    """Events waiting to be relayed to the bus, written in the producer's own transaction."""

    def __init__(self, table: str = "agora_outbox") -> None:
        self.table = _table(table)

    def create_schema(self, conn: Any) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    seq BIGSERIAL PRIMARY KEY,
                    event_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    body BYTEA NOT NULL,
                    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    sent_at TIMESTAMPTZ
                );
                CREATE INDEX IF NOT EXISTS {self.table}_unsent ON {self.table} (seq) WHERE sent_at IS NULL;
                """
            )

    def drop_schema(self, conn: Any) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")

    def add(self, conn_or_cursor: Any, envelopes: Sequence[Envelope]) -> None:
        """Record events in the caller's open transaction (the caller commits)."""
        cur = _cursor(conn_or_cursor)
        # One statement for the whole batch: a producer's group commit adds hundreds at once.
        execute_values(
            cur,
            f"INSERT INTO {self.table} (event_id, type, body) VALUES %s",
            [(e.id, e.type, e.SerializeToString()) for e in envelopes],
            page_size=1000,
        )

    # -- the relay's side, on its own connection: claim, then mark_sent (commit) or release (rollback)

    def claim(self, conn: Any, limit: int) -> list[tuple[int, bytes]]:
        """Lock the oldest unsent rows no other relay holds; the transaction stays open until marked."""
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT seq, body FROM {self.table} WHERE sent_at IS NULL ORDER BY seq "
                "LIMIT %s FOR UPDATE SKIP LOCKED",
                (limit,),
            )
            return [(seq, bytes(body)) for seq, body in cur.fetchall()]

    def mark_sent(self, conn: Any, seqs: Sequence[int]) -> None:
        with conn.cursor() as cur:
            cur.execute(f"UPDATE {self.table} SET sent_at = now() WHERE seq = ANY(%s)", (list(seqs),))
        conn.commit()

    def release(self, conn: Any) -> None:
        conn.rollback()

    def unsent(self, conn: Any) -> int:
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {self.table} WHERE sent_at IS NULL")
            return cur.fetchone()[0]

    def prune(self, conn: Any, older_than: float) -> int:
        """Forget events relayed more than `older_than` seconds ago."""
        with conn, conn.cursor() as cur:
            cur.execute(
                f"DELETE FROM {self.table} WHERE sent_at < now() - make_interval(secs => %s)", (older_than,)
            )
            return cur.rowcount


class PostgresInbox:
    """Event ids a consumer group has already applied, marked in the same transaction as the effect."""

    def __init__(self, table: str = "agora_inbox") -> None:
        self.table = _table(table)

    def create_schema(self, conn: Any) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"""
                CREATE TABLE IF NOT EXISTS {self.table} (
                    group_name TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                    PRIMARY KEY (group_name, event_id)
                )
                """
            )

    def drop_schema(self, conn: Any) -> None:
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {self.table}")

    def claim(self, conn_or_cursor: Any, group: str, event_id: str) -> bool:
        """True the first time `group` sees `event_id` (apply the effect); False for a redelivery.

        A concurrent duplicate waits on the primary key until the first transaction ends."""
        cur = _cursor(conn_or_cursor)
        cur.execute(
            f"INSERT INTO {self.table} (group_name, event_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (group, event_id),
        )
        return cur.rowcount == 1
