"""The audit storage port, and the factory that picks its adapter (Cassandra real, SQLite embedded)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from services.audit.domain import AuditEvent, Cursor, TypePattern
from services.kit.config import Settings


class AuditStore(Protocol):
    async def start(self) -> None:
        """Create tables if missing."""

    async def last_sequence(self) -> int:
        """The sequence just before the next one this process will assign."""

    async def record(self, event: AuditEvent) -> tuple[AuditEvent, bool]:
        """Store the event with the next sequence and recorded_at now; if its id was recorded before,
        answer that record and False (nothing changes)."""

    async def get(self, event_id: str) -> AuditEvent | None: ...

    async def query(self, start: datetime, end: datetime, pattern: TypePattern | None, key: str, source: str,
                    after: Cursor | None, limit: int) -> list[AuditEvent]:
        """Events with start <= occurred_at < end, ordered by (occurred_at, sequence), after the cursor."""

    async def since(self, after: int, upto: int) -> list[AuditEvent]:
        """Events with after < sequence <= upto, in sequence order (WatchEvents replay)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings) -> AuditStore:
    if settings.real:
        from services.audit.stores.cassandra import CassandraAuditStore

        return CassandraAuditStore(settings)
    from services.audit.stores.sqlite import SqliteAuditStore

    return SqliteAuditStore(settings.data_dir / "audit.sqlite3")
