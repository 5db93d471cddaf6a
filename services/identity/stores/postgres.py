"""Identity on PostgreSQL: users, sessions (token hashes only) and the outbox, in the domain's own schema."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

import psycopg2
import psycopg2.errors
from agora.events.v1.envelope_pb2 import Envelope

from services.identity.domain import NameTaken, NewUser, Session, User
from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.stores.postgres import PostgresAdapter, PostgresDatabase
from services.kit.telemetry.metrics import timed_operations

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    user_name_key TEXT NOT NULL CONSTRAINT users_user_name_key UNIQUE,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL CONSTRAINT users_email_key UNIQUE,
    bio TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id) WHERE revoked_at IS NULL;
"""

_USER = "u.id, u.user_name, u.email, u.bio, u.created_at"


def _user(row) -> User:
    return User(row[0], row[1], row[2], row[3], row[4])


@timed_operations
class PostgresIdentityStore(PostgresAdapter):
    def __init__(self, url: str, *, schema: str = "identity") -> None:
        self.url = url
        self.schema = schema
        self.db = PostgresDatabase(url, schema=schema)
        self.outbox = PostgresOutbox()

    async def _run(self, sql: str, args: tuple = (), *, fetch: str = "") -> object:
        def go(conn):
            with conn.cursor() as cur:
                cur.execute(sql, args)
                if fetch == "one":
                    return cur.fetchone()
                return cur.rowcount

        return await self.db.transaction(go)

    async def start(self) -> None:
        def create(conn) -> None:
            self._lock_schema(conn, "identity")
            with conn.cursor() as cur:
                cur.execute(SCHEMA)

        await self.db.transaction(create)
        await asyncio.to_thread(self._create_outbox)

    async def create_user(self, user_id: str, new: NewUser, password_hash: str, created_at: datetime,
                          events: Sequence[Envelope]) -> User:
        def insert(conn) -> None:
            with conn.cursor() as cur:
                try:
                    cur.execute(
                        "INSERT INTO users (id, user_name, user_name_key, email, email_key, bio,"
                        " password_hash, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (user_id, new.user_name, new.user_name_key, new.email, new.email_key, new.bio,
                         password_hash, created_at),
                    )
                except psycopg2.errors.UniqueViolation as exc:
                    constraint = getattr(exc.diag, "constraint_name", "") or ""
                    raise NameTaken("email" if "email" in constraint else "user_name") from None
                self.outbox.add(cur, events)

        await self.db.transaction(insert)
        return User(user_id, new.user_name, new.email, new.bio, created_at)

    async def find_login(self, by: str, key: str) -> tuple[User, str] | None:
        column = {"email": "email_key", "user_name": "user_name_key"}[by]
        row = await self._run(f"SELECT {_USER}, u.password_hash FROM users u WHERE u.{column} = %s", (key,),
                              fetch="one")
        return (_user(row), row[5]) if row else None

    async def get_user(self, user_id: str) -> User | None:
        row = await self._run(f"SELECT {_USER} FROM users u WHERE u.id = %s", (user_id,), fetch="one")
        return _user(row) if row else None

    async def create_session(self, token_hash: str, user_id: str, created_at: datetime,
                             expires_at: datetime) -> None:
        await self._run(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (%s, %s, %s, %s)",
            (token_hash, user_id, created_at, expires_at),
        )

    async def find_session(self, token_hash: str, now: datetime) -> Session | None:
        row = await self._run(
            f"SELECT {_USER}, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > %s",
            (token_hash, now), fetch="one",
        )
        return Session(_user(row), row[5]) if row else None

    async def revoke_session(self, token_hash: str, now: datetime, events: Sequence[Envelope] = ()) -> bool:
        def revoke(conn) -> bool:
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE sessions SET revoked_at = %s WHERE token_hash = %s AND revoked_at IS NULL"
                    " AND expires_at > %s", (now, token_hash, now))
                if cur.rowcount == 1:
                    self.outbox.add(cur, events)
                return cur.rowcount == 1

        return await self.db.transaction(revoke)

    async def revoke_all_sessions(self, user_id: str, now: datetime, events: Sequence[Envelope] = ()) -> int:
        def revoke(conn) -> int:
            with conn.cursor() as cur:
                cur.execute(
                    "UPDATE sessions SET revoked_at = %s WHERE user_id = %s AND revoked_at IS NULL"
                    " AND expires_at > %s", (now, user_id, now))
                if cur.rowcount:
                    self.outbox.add(cur, events)
                return cur.rowcount

        return await self.db.transaction(revoke)
