"""Starts the commerce domains (customers, catalog, orders, audit) on free ports, and the bridge in
front of them, on embedded or real backends, with names unique to this run (and cleans them up)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from services.kit.config import Settings
from services.kit.registry import DOMAINS
from services.kit.server import DomainServer
from services.mesh.launcher import Runtime, builder_for

COMMERCE = ("customers", "catalog", "orders", "audit")
DESCRIPTORS = Path(__file__).resolve().parents[3] / "clients" / "python" / "agora" / "descriptors.binpb"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Commerce:
    settings: Settings
    runtime: Runtime
    servers: dict[str, DomainServer] = field(default_factory=dict)
    base_url: str = ""
    bridge: object = None
    bridge_task: asyncio.Task | None = None
    run_id: str = ""

    def target(self, domain: str) -> str:
        return self.settings.target(domain)


def unique_names(monkeypatch_setattr, run_id: str) -> None:
    """Give this run its own bus consumer groups and PostgreSQL schema (other runs share the servers)."""
    import services.audit.consumers as audit_consumers
    import services.catalog.consumers as catalog_consumers
    import services.customers.stores.postgres as customers_pg

    monkeypatch_setattr(audit_consumers, "GROUP", f"test-audit-{run_id}")
    monkeypatch_setattr(catalog_consumers, "GROUP", f"test-catalog-stock-{run_id}")
    monkeypatch_setattr(customers_pg, "SCHEMA", f"test_customers_{run_id}")


async def start(settings: Settings, *, bridge: bool = True, domains: tuple[str, ...] = COMMERCE,
                builders: dict | None = None) -> Commerce:
    """Serve `domains` (each through builders[name](runtime) when given, else its own build)."""
    from gateway.server import make_gateway_server

    builders = builders or {}
    ports = {name: free_port() for name in domains}
    settings = dataclasses.replace(settings, targets={name: f"127.0.0.1:{p}" for name, p in ports.items()},
                                   health_interval=0.2)
    runtime = Runtime(settings)
    mesh = Commerce(settings, runtime)
    for name in domains:
        spec = await (builders.get(name) or builder_for(DOMAINS[name]))(runtime)
        server = DomainServer(spec, host="127.0.0.1", port=ports[name], grace=1.0, health_interval=0.2,
                              lifecycle=runtime.lifecycle)
        await server.start()
        mesh.servers[name] = server
    if bridge:
        http_port = free_port()
        upstreams = {DOMAINS[name].service: settings.target(name) for name in domains}
        server = make_gateway_server(DESCRIPTORS.read_bytes(), upstreams, port=http_port,
                                     default_timeout=30.0, heartbeat_interval=0.5)
        mesh.bridge = server
        mesh.bridge_task = asyncio.ensure_future(server.serve())
        while not server.started:
            if mesh.bridge_task.done():
                mesh.bridge_task.result()
            await asyncio.sleep(0.01)
        mesh.base_url = f"http://127.0.0.1:{http_port}"
    return mesh


async def stop(mesh: Commerce) -> None:
    if mesh.bridge is not None:
        mesh.bridge.should_exit = True
        await mesh.bridge_task
    await asyncio.gather(*(s.stop() for s in mesh.servers.values()), return_exceptions=True)
    await mesh.runtime.close()


async def drop_real(settings: Settings, run_id: str, *, groups: tuple[str, ...] = (),
                    schemas: tuple[str, ...] = ()) -> None:
    """Remove what a real-backend run created: bus groups, schemas, database, keyspace."""
    import psycopg2
    import pymongo

    from services.kit.bus.rabbitmq import RabbitBus
    from services.kit.stores.cassandra import CassandraDatabase

    bus = RabbitBus(settings.amqp_url)
    for group in (f"test-audit-{run_id}", f"test-catalog-stock-{run_id}", *groups):
        with contextlib.suppress(Exception):  # best effort: a later run's names differ anyway
            await bus.delete_group(group)

    def sql() -> None:
        conn = psycopg2.connect(settings.postgres_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            for schema in (f"test_customers_{run_id}", *schemas):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
        client = pymongo.MongoClient(settings.mongo_url)
        client.drop_database(settings.mongo_db)
        client.close()

    await asyncio.to_thread(sql)
    db = CassandraDatabase(settings)
    await db.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra_keyspace}", timeout=60)
    await db.close()


def real_settings(base: Settings, run_id: str) -> Settings:
    return dataclasses.replace(base, backends="real", mongo_db=f"test_commerce_{run_id}",
                               cassandra_keyspace=f"test_commerce_{run_id}")


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]
