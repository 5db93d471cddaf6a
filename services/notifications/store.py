"""The notifications storage port, and the factory that picks its adapter (PostgreSQL real, SQLite embedded).

Every change of a notification (created, each attempt, sent, failed) is also appended to a change
log with a service-wide sequence, written in the same transaction: WatchNotifications replays it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.kit.config import Settings
from services.notifications.domain import Notification, NotificationFilter


class NotificationStore(Protocol):
    async def start(self) -> None: ...

    async def create(self, notifications: Sequence[Notification]) -> list[tuple[int, Notification]]:
        """Insert each unless (event_id, channel, recipient) exists; the ones inserted, with their change
        sequence."""

    async def claim_due(self, at: datetime, limit: int, lease_seconds: float) -> list[Notification]:
        """QUEUED, or RETRYING and due, not leased by another dispatcher: leased to this one."""

    async def record(self, notification: Notification) -> int:
        """Store a delivery outcome (releasing the lease); its change sequence."""

    async def get(self, notification_id: str) -> Notification | None: ...

    async def list(self, filter: NotificationFilter, cursor: str,
                   limit: int) -> tuple[list[Notification], str]:
        """Newest first from `cursor`; and the next cursor ('' at the end)."""

    async def changes(self, after: int, upto: int, limit: int) -> list[tuple[int, Notification]]:
        """Changes with after < sequence <= upto, oldest first."""

    async def last_sequence(self) -> int: ...

    async def remember_contact(self, user_id: str, email: str) -> None:
        """An identity user's e-mail address (from identity.user.registered)."""

    async def contact(self, user_id: str) -> str | None: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings, *, schema: str = "notifications") -> NotificationStore:
    if settings.real:
        from services.notifications.stores.postgres import PostgresNotificationStore

        return PostgresNotificationStore(settings.postgres_url, schema=schema)
    from services.notifications.stores.sqlite import SqliteNotificationStore

    return SqliteNotificationStore(settings.data_dir / "notifications.sqlite3")
