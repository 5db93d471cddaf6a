"""The customers storage port, and the factory that picks its adapter (PostgreSQL real, SQLite embedded)."""

from __future__ import annotations

from typing import Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.customers.domain import Kind, Party
from services.kit.config import Settings


class CustomerStore(Protocol):
    async def start(self) -> None:
        """Connect; create the tables if missing."""

    async def create(self, party: Party, event: Envelope) -> Party:
        """Insert the party and its event (outbox) in one transaction; EmailTaken if the email is used."""

    async def get(self, kind: Kind, party_id: str) -> Party | None: ...

    async def update(self, party: Party) -> Party:
        """Replace the mutable fields; EmailTaken if the new email belongs to another party."""

    async def list(self, kind: Kind, query: str, after: int, limit: int,
                   owner: str | None = None) -> list[tuple[int, Party]]:
        """Up to `limit` parties positioned after `after`, oldest first, each with its position;
        `query` is a case-insensitive substring of name or email ('' for all); `owner` keeps only the
        parties of that user id ('' = those that belong to nobody; None = everyone's)."""

    @property
    def outbox(self):
        """The outbox table the store writes events to (the relay claims from it)."""

    def relay_connection(self):
        """A connection of the relay's own (services.kit.bus.outbox.outbox_relay)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> CustomerStore:
    if settings.real:
        from services.customers.stores.postgres import PostgresCustomerStore

        return PostgresCustomerStore(settings.postgres_url)
    from services.customers.stores.sqlite import SqliteCustomerStore

    return SqliteCustomerStore(settings.data_dir / "customers.sqlite3")
