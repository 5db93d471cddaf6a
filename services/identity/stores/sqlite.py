"""Identity on SQLite (the embedded default): users, sessions (token hashes only), the outbox."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from agora.events.v1.envelope_pb2 import Envelope

from services.identity.domain import NameTaken, NewUser, Session, User
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.stores.sqlite import SqliteAdapter, SqliteDatabase
from services.kit.telemetry.metrics import timed_operations

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL UNIQUE,
    bio TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
"""


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _time(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc)


def _user(row) -> User:
    return User(row["id"], row["user_name"], row["email"], row["bio"], _time(row["created_at"]))


@timed_operations
class SqliteIdentityStore(SqliteAdapter):
    relay_busy_timeout = 5000

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self.db = SqliteDatabase(path)
        self.outbox = SqliteOutbox()

    async def start(self) -> None:
        await self._create_tables(SCHEMA)

    async def create_user(self, user_id: str, new: NewUser, password_hash: str, created_at: datetime,
                          events: Sequence[Envelope]) -> User:
        def insert(conn: sqlite3.Connection) -> None:
            for column, key in (("user_name_key", new.user_name_key), ("email_key", new.email_key)):
                if conn.execute(f"SELECT 1 FROM users WHERE {column} = ?", (key,)).fetchone():
                    raise NameTaken(column.removesuffix("_key"))
            conn.execute(
                "INSERT INTO users (id, user_name, user_name_key, email, email_key, bio, password_hash,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (user_id, new.user_name, new.user_name_key, new.email, new.email_key, new.bio, password_hash,
                 _us(created_at)),
            )
            self.outbox.add(conn, events)

        await self.db.transaction(insert)
        return User(user_id, new.user_name, new.email, new.bio, created_at)

    async def find_login(self, by: str, key: str) -> tuple[User, str] | None:
        column = {"email": "email_key", "user_name": "user_name_key"}[by]
        row = await self.db.run(lambda c: c.execute(f"SELECT * FROM users WHERE {column} = ?",
                                                    (key,)).fetchone())
        return (_user(row), row["password_hash"]) if row else None

    async def get_user(self, user_id: str) -> User | None:
        row = await self.db.run(lambda c: c.execute("SELECT * FROM users WHERE id = ?",
                                                    (user_id,)).fetchone())
        return _user(row) if row else None

    async def create_session(self, token_hash: str, user_id: str, created_at: datetime,
                             expires_at: datetime) -> None:
        await self.db.run(lambda c: c.execute(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, user_id, _us(created_at), _us(expires_at)),
        ))

    async def find_session(self, token_hash: str, now: datetime) -> Session | None:
        row = await self.db.run(lambda c: c.execute(
            "SELECT u.*, s.expires_at AS session_expires FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ?",
            (token_hash, _us(now)),
        ).fetchone())
        return Session(_user(row), _time(row["session_expires"])) if row else None

    async def revoke_session(self, token_hash: str, now: datetime, events: Sequence[Envelope] = ()) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL"
                " AND expires_at > ?",
                (_us(now), token_hash, _us(now)),
            )
            if cursor.rowcount == 1:
                self.outbox.add(conn, events)
            return cursor.rowcount == 1

        return await self.db.transaction(revoke)

    async def revoke_all_sessions(self, user_id: str, now: datetime, events: Sequence[Envelope] = ()) -> int:
        def revoke(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"
                " AND expires_at > ?",
                (_us(now), user_id, _us(now)),
            )
            if cursor.rowcount:
                self.outbox.add(conn, events)
            return cursor.rowcount

        return await self.db.transaction(revoke)
