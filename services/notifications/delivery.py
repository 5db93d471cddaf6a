"""Delivering queued notifications, retrying failures with back-off, and the live change feed.

`NotificationBook` is the one writer of notification state in this process: each write commits
with its change-log row and is then appended to the live log under one lock, so the stream sees
changes in sequence order. `Dispatcher` leases due notifications, sends each once per attempt,
and records SENT, RETRYING (with next_attempt_at) or FAILED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from services.kit.streams import SequencedLog
from services.kit.worker import Worker
from services.notifications import domain
from services.notifications.domain import Channel, DeliveryRules, Notification
from services.notifications.senders import DeliveryFailed, EmailSender, SmsProvider, Undeliverable
from services.notifications.store import NotificationStore

log = logging.getLogger("agora.notifications.delivery")

FEED = "all"  # one service-wide sequence: every subscriber filters it


class NotificationBook:
    def __init__(self, store: NotificationStore, *, capacity: int = 2048) -> None:
        self.store = store
        self.log: SequencedLog[str, Notification] = SequencedLog(name="notifications", capacity=capacity)
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Seed the live log at the store's last change (the store has started)."""
        self.log.seed(FEED, await self.store.last_sequence())

    async def close(self) -> None:
        """Nothing to let go: the store closes itself."""

    async def create(self, notifications: Sequence[Notification]) -> list[Notification]:
        async with self._lock:
            created = await self.store.create(notifications)
            for seq, n in created:
                self.log.append(FEED, seq, n)
        return [n for _, n in created]

    async def record(self, notification: Notification) -> None:
        async with self._lock:
            seq = await self.store.record(notification)
            self.log.append(FEED, seq, notification)


class Dispatcher:
    """Between `start()` and `stop()` a kit Worker dispatches: again at once after a full batch,
    else every `poll` seconds or on `wake()`; when the store is away it logs and tries again
    `poll` seconds later."""

    def __init__(self, book: NotificationBook, email: EmailSender, sms: SmsProvider, rules: DeliveryRules, *,
                 poll: float = 0.5, batch: int = 50, lease: float = 60.0) -> None:
        self.book, self.email, self.sms, self.rules = book, email, sms, rules
        self.poll, self.batch, self.lease = poll, batch, lease
        self._worker = Worker(self._step, name="notification-dispatcher", backoff=poll, max_backoff=poll,
                              on_error=lambda exc, _: log.error("dispatching notifications failed",
                                                                exc_info=exc))

    def wake(self) -> None:
        """Notifications were just queued: dispatch now rather than at the next poll."""
        self._worker.wake()

    async def _deliver(self, n: Notification) -> None:
        try:
            if n.channel is Channel.EMAIL:
                await self.email.send(n.id, n.recipient, n.subject, n.body)
            else:
                await self.sms.send(n.id, n.recipient, n.body)
        except Undeliverable as exc:
            after = domain.attempt_failed(n, str(exc), self.rules, domain.now(), permanent=True)
        except DeliveryFailed as exc:
            after = domain.attempt_failed(n, str(exc), self.rules, domain.now())
        else:
            after = domain.delivered(n, domain.now())
        if after.status is not domain.Status.SENT:
            log.info("notification %s attempt %d: %s (%s)", n.id, after.attempts, after.status.name,
                     after.last_error)
        await self.book.record(after)

    async def dispatch_once(self) -> int:
        due = await self.book.store.claim_due(domain.now(), self.batch, self.lease)
        await asyncio.gather(*(self._deliver(n) for n in due))
        return len(due)

    async def _step(self) -> float:
        sent = await self.dispatch_once()
        return 0 if sent >= self.batch else self.poll  # a full batch: more may be due

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
