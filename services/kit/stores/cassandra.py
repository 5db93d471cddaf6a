"""Cassandra through cassandra-driver: protocol version from config (5 or 4 for 4.x/5.x, 3 for 2.1).

Policies go in the driver's default execution profile (not the legacy Cluster parameters, which the
driver deprecates); consistency is LOCAL_QUORUM, which is ONE on the one-node local server and a
majority of the local data centre's replicas in production.

The driver has its own I/O threads; we wait on its futures without blocking the event loop.
Every request on the session (through `execute`, or an adapter's own calls in a worker thread)
is timed in agora_store_duration_seconds by a request listener on the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import RoundRobinPolicy

from services.kit.config import Settings
from services.kit.telemetry.metrics import (
    cassandra_operation,
    observe_cassandra_requests,
    store_operation,
    timed_operations,
)


class CassandraDatabase:
    def __init__(self, settings: Settings, *, keyspace: str | None = None,
                 replication_factor: int = 1) -> None:
        self.settings = settings
        self.keyspace = keyspace or settings.cassandra_keyspace
        self.replication_factor = replication_factor
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> Session:
        logging.getLogger("cassandra").setLevel(logging.ERROR)
        cluster = Cluster(
            self.settings.cassandra_contact_points.split(","),
            port=self.settings.cassandra_port,
            protocol_version=self.settings.cassandra_protocol_version,
            execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(
                load_balancing_policy=RoundRobinPolicy(), consistency_level=ConsistencyLevel.LOCAL_QUORUM)},
            connect_timeout=3,
        )
        try:
            session = cluster.connect()
            session.execute(
                f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = "
                f"{{'class': 'SimpleStrategy', 'replication_factor': {self.replication_factor}}}"
            )
            session.set_keyspace(self.keyspace)
            observe_cassandra_requests(session)
        except Exception:
            cluster.shutdown()
            raise
        self._cluster = cluster
        return session

    async def session(self) -> Session:
        if self._session is None:
            async with self._lock:
                if self._session is None:
                    self._session = await asyncio.get_running_loop().run_in_executor(None, self._connect)
        return self._session

    async def execute(self, statement: Any, params: Any = None, *, timeout: float = 5.0,
                      operation: str | None = None):
        """Run one statement; the driver's future is awaited from the event loop. Timed as
        `operation` (default: the store method that called) in agora_store_duration_seconds."""
        session = await self.session()
        token = cassandra_operation.set(operation or store_operation())
        try:
            future = session.execute_async(statement, params, timeout=timeout)
        finally:
            cassandra_operation.reset(token)
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def ok(rows):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(rows))

        def err(exc):
            loop.call_soon_threadsafe(lambda: done.done() or done.set_exception(exc))

        future.add_callbacks(ok, err)
        await done
        return future.result()

    async def ping(self) -> bool:
        rows = await self.execute("SELECT release_version FROM system.local", timeout=2.0, operation="ping")
        return rows.one() is not None

    async def close(self) -> None:
        if self._cluster is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._cluster.shutdown)
            self._cluster = self._session = None


@timed_operations
class CassandraAdapter:
    """The plumbing the Cassandra store adapters share, from `self.db` (a CassandraDatabase) and the
    adapter's `_prepare(session)` (its prepared statements)."""

    db: CassandraDatabase

    async def _create_tables(self, schema: Sequence[str]) -> Session:
        """Each statement of `schema` (30 s apiece), then `_prepare(session)`, in a worker thread; the
        session (timed as the method that called: `start`)."""
        session = await self.db.session()

        def create() -> None:
            for statement in schema:
                session.execute(statement, timeout=30)
            self._prepare(session)

        await asyncio.to_thread(create)
        return session

    async def _truncate(self, tables: Sequence[str]) -> None:
        for table in tables:
            await self.db.execute(f"TRUNCATE {table}", timeout=30)

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
