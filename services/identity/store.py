"""Identity's storage port and the factory that picks its adapter (PostgreSQL when real, else SQLite)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.identity.domain import NewUser, Session, User
from services.kit.config import Settings


class IdentityStore(Protocol):
    outbox: Any  # the bus outbox table the relay drains (services.kit.bus.outbox.Outbox)

    async def start(self) -> None:
        """Create the tables if missing."""

    async def create_user(self, user_id: str, new: NewUser, password_hash: str, created_at: datetime,
                          events: Sequence[Envelope]) -> User:
        """Insert the account and its events in one transaction; NameTaken names a clash."""

    async def find_login(self, by: str, key: str) -> tuple[User, str] | None:
        """(user, password hash) by lower-case 'email' or 'user_name', or None."""

    async def get_user(self, user_id: str) -> User | None: ...

    async def create_session(self, token_hash: str, user_id: str, created_at: datetime,
                             expires_at: datetime) -> None: ...

    async def find_session(self, token_hash: str, now: datetime) -> Session | None:
        """The live (not expired, not revoked) session with this token hash."""

    async def revoke_session(self, token_hash: str, now: datetime, events: Sequence[Envelope] = ()) -> bool:
        """Revoke one live session and write `events` to the outbox in the same transaction;
        False (and no events) if it was not live."""

    async def revoke_all_sessions(self, user_id: str, now: datetime, events: Sequence[Envelope] = ()) -> int:
        """Revoke every live session of the user (with `events`, when there was one); how many."""

    def relay_connection(self) -> Any:
        """A fresh connection for the outbox relay (it keeps its own)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings, *, schema: str = "identity") -> IdentityStore:
    """PostgreSQL (in `schema`) for real backends, a SQLite file under data_dir otherwise (not started
    yet: the server starts it)."""
    if settings.real:
        from services.identity.stores.postgres import PostgresIdentityStore

        return PostgresIdentityStore(settings.postgres_url, schema=schema)
    from services.identity.stores.sqlite import SqliteIdentityStore

    return SqliteIdentityStore(settings.data_dir / "identity.sqlite3")
