"""One Cassandra keyspace for the orders tests of this run (DDL on Cassandra 2.1 is slow): made once,
dropped after."""

from __future__ import annotations

import dataclasses
import uuid

import pytest


@pytest.fixture(scope="session")
async def orders_cassandra(cassandra_settings):
    from services.orders.stores.cassandra import CassandraOrderStore

    settings = dataclasses.replace(cassandra_settings,
                                   cassandra_keyspace=f"test_orders_{uuid.uuid4().hex[:10]}")
    store = CassandraOrderStore(settings)
    await store.start()
    yield settings, store
    await store.db.execute(f"DROP KEYSPACE {settings.cassandra_keyspace}", timeout=60)
    await store.close()


@pytest.fixture(scope="module", params=["embedded", "real"])
async def commerce(request, tmp_path_factory):
    """The four commerce domains and the bridge, on SQLite + in-process bus, or on PostgreSQL, MongoDB,
    Cassandra and RabbitMQ (names unique to this run, removed afterwards)."""
    from services.kit.config import Settings
    from tests.services.orders import commerce as harness

    run_id = harness.new_run_id()
    patcher = pytest.MonkeyPatch()
    harness.unique_names(patcher.setattr, run_id)
    base = Settings.from_env()
    if request.param == "real":
        for server in ("postgres", "mongodb", "cassandra", "rabbitmq"):
            from tests.realservers import require

            require(server)
        settings = harness.real_settings(base, run_id)
    else:
        settings = dataclasses.replace(base, backends="embedded",
                                       data_dir=tmp_path_factory.mktemp("commerce"))
    mesh = await harness.start(settings)
    mesh.run_id = run_id
    try:
        yield mesh
    finally:
        await harness.stop(mesh)
        if request.param == "real":
            await harness.drop_real(settings, run_id)
        patcher.undo()
