"""The outbox relay: publishes events producers wrote to their SQL outbox, and marks them sent once confirmed.

A producer writes its state change and `outbox.add(conn, [envelope])` in one transaction, so the
event exists exactly when the change does; the relay does the rest. The envelope's trace headers
were set when it was made (services.kit.bus.envelopes), so its consumers' spans join the trace of
the call that wrote it, however late the relay sends it. While the broker is away the
relay waits on the bus (which resends on reconnect) and producers keep committing; the backlog
goes out when the broker is back. A row can be published twice (the relay died between the
confirm and the mark): consumers are idempotent (see stores/ for the inbox).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.port import EventBus
from services.kit.telemetry import metrics
from services.kit.worker import Worker

log = logging.getLogger("agora.bus.outbox")


class Outbox(Protocol):
    """The relay's view of an outbox table (stores.sqlite.SqliteOutbox, stores.postgres.PostgresOutbox)."""

    def claim(self, conn: Any, limit: int) -> list[tuple[int, bytes]]: ...
    def mark_sent(self, conn: Any, seqs: Sequence[int]) -> None: ...
    def release(self, conn: Any) -> None: ...


class OutboxRelay:
    """Moves outbox rows onto the bus, oldest first, in batches, on one connection of its own.

    `connect()` opens that connection; every database call runs on one worker thread (so a
    sqlite3 connection stays on the thread that made it and the loop never waits on the DB).
    Between `start()` and `stop()` a kit Worker relays: again at once after a full batch, else
    every `idle_wait` seconds or on `wake()`; a failure counts in `outbox_failures`, drops the
    connection and backs off (0.1s, doubling, at most `max_backoff`)."""

    def __init__(
        self,
        bus: EventBus,
        outbox: Outbox,
        connect: Callable[[], Any],
        *,
        batch_size: int = 500,
        idle_wait: float = 0.5,
        max_backoff: float = 5.0,
    ) -> None:
        self._bus, self._outbox, self._connect = bus, outbox, connect
        self._batch_size, self._idle_wait = batch_size, idle_wait
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agora-outbox-relay")
        self._conn: Any = None
        self._worker = Worker(self._step, name="outbox-relay", max_backoff=max_backoff, on_error=self._failed)
        self.relayed = 0

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _claim(self) -> list[tuple[int, bytes]]:
        return self._outbox.claim(self._connection(), self._batch_size)

    def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - a broken connection may fail to close; it is dropped anyway
                log.debug("closing the relay's connection: %s", exc)

    async def relay_once(self) -> int:
        """Publish one batch of unsent events; how many went out (0: the outbox is empty)."""
        rows = await self._call(self._claim)
        if not rows:
            await self._call(self._outbox.release, self._conn)
            return 0
        envelopes = [Envelope.FromString(body) for _, body in rows]
        try:
            await self._bus.publish(envelopes)
        except BaseException:
            await self._call(self._outbox.release, self._conn)
            raise
        await self._call(self._outbox.mark_sent, self._conn, [seq for seq, _ in rows])
        self.relayed += len(rows)
        metrics.outbox_relayed.inc(len(rows))
        return len(rows)

    def wake(self) -> None:
        """A producer just committed events: relay now rather than at the next poll."""
        self._worker.wake()

    async def _step(self) -> float:
        sent = await self.relay_once()
        return 0 if sent >= self._batch_size else self._idle_wait  # a full batch: more are waiting

    async def _failed(self, exc: Exception, retry_in: float) -> None:
        metrics.outbox_failures.inc()
        log.warning("outbox relay failed (%s); retrying in %.1fs", exc, retry_in)
        await asyncio.to_thread(self._forget_connection)

    async def start(self) -> None:
        await self._worker.start()

    async def stop(self) -> None:
        await self._worker.stop()
        await self._call(self._forget_connection)
        self._db.shutdown(wait=True)


class Borrowed:
    """The relay's 'connection' where the store's own client is shared (a Cassandra session, a
    MongoDB database): the relay calls `close()` when it drops a connection, and the store owns it."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def close(self) -> None:
        return None  # not the relay's to close: the store closes its client


class RelaySource(Protocol):
    """A store with an outbox: its table, and a connection of the relay's own to reach it."""

    @property
    def outbox(self) -> Outbox: ...
    def relay_connection(self) -> Any: ...


def outbox_relay(bus: EventBus, store: RelaySource, **options: Any) -> OutboxRelay:
    """The one way a domain makes its relay: from the store that writes the outbox."""
    return OutboxRelay(bus, store.outbox, store.relay_connection, **options)
