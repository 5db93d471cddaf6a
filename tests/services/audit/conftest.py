"""One Cassandra keyspace for the audit tests of this run (DDL on Cassandra 2.1 is slow): made once,
dropped after."""

from __future__ import annotations

import dataclasses
import uuid

import pytest


@pytest.fixture(scope="session")
async def audit_cassandra(cassandra_settings):
    from services.audit.stores.cassandra import CassandraAuditStore

    settings = dataclasses.replace(cassandra_settings,
                                   cassandra_keyspace=f"test_audit_{uuid.uuid4().hex[:10]}")
    store = CassandraAuditStore(settings)
    await store.start()
    yield settings, store
    await store.db.execute(f"DROP KEYSPACE {settings.cassandra_keyspace}", timeout=60)
    await store.close()
