"""Chat's storage port: rooms, their gapless entry log, attachments, live connections; and the factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from services.chat.domain import AttachmentInfo, Author, Draft, Entry, Member, Room
from services.kit.config import Settings


class ChatStore(Protocol):
    """The source of truth for every room's sequence. Each write that adds an entry also writes its
    `chat.*` event to the outbox in the same transaction (the relay publishes it)."""

    outbox: Any  # the bus outbox table the relay drains

    async def start(self) -> None:
        """Create the tables if missing, and the default room."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def create_room(self, room_id: str, title: str, description: str, created_by: str,
                          now: float) -> Room:
        """The new room; AlreadyExists when the id is taken."""

    async def get_room(self, room_id: str) -> Room | None: ...

    async def list_rooms(self, limit: int, offset: int) -> list[Room]:
        """Most recently active first."""

    async def last_sequence(self, room_id: str) -> int | None:
        """The room's latest sequence (0 when empty); None when there is no such room."""

    async def append(self, draft: Draft, now: float) -> tuple[Entry, bool]:
        """Store a message at the room's next sequence; (entry, True). A retry (same author and
        client_message_id) returns (the first entry, False). NotFound for an unknown room."""

    async def history(self, room_id: str, limit: int, before: int | None) -> list[Entry]:
        """Up to `limit` entries with sequence < before (None: from the newest), newest first."""

    async def entries_after(self, room_id: str, after: int, upto: int | None, limit: int) -> list[Entry]:
        """Up to `limit` entries with after < sequence <= upto (None: no upper bound), oldest first."""

    async def attachment(self, room_id: str, attachment_id: str) -> tuple[AttachmentInfo, bytes] | None: ...

    async def connect(self, room_id: str, author: Author, connection_id: str, replica: str,
                      now: float) -> Entry | None:
        """Record an open connection; the JOIN entry when it is the member's first. NotFound for an
        unknown room."""

    async def disconnect(self, connection_id: str, timed_out: bool, now: float) -> Entry | None:
        """Forget a connection; the LEAVE entry when it was the member's last (None if already gone)."""

    async def touch(self, replica: str, now: float) -> None:
        """Mark every connection this replica holds as alive now."""

    async def stale_connections(self, seen_before: float) -> list[str]:
        """Connections whose replica stopped touching them (it died): to disconnect as timed out."""

    async def members(self, room_id: str) -> list[Member]:
        """Members present now (one per account or anonymous name), by when they joined."""

    def relay_connection(self) -> Any:
        """A connection of the relay's own (services.kit.bus.outbox.outbox_relay)."""

    async def prune_outbox(self, older_than: float) -> None: ...


def open_store(settings: Settings, *, schema: str = "chat", sqlite_path: Path | None = None) -> ChatStore:
    """PostgreSQL (schema `schema`) when the settings ask for real backends, SQLite under data_dir
    otherwise."""
    if settings.real:
        from services.chat.stores.postgres import PostgresChatStore

        return PostgresChatStore(settings.postgres_url, schema=schema)
    from services.chat.stores.sqlite import SqliteChatStore

    return SqliteChatStore(sqlite_path or Path(settings.data_dir) / "chat.sqlite3")
