"""The Prometheus instruments: RPCs by service/method/code, streams, the bus, stores, the /metrics
endpoint of a gRPC process and the launcher's announcement of it. Counts are read as deltas: the
registry is the process's and other tests add to it."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.request

import grpc
import pytest
from google.protobuf.wrappers_pb2 import StringValue
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from services.kit.bus import new_envelope
from services.kit.bus.inprocess import InProcessBus
from services.kit.config import Settings
from services.kit.errors import ResourceExhausted
from services.kit.server import DomainServer
from services.kit.stores.sqlite import SqliteDatabase
from services.kit.streams import SequencedLog, SnapshotFeed
from services.kit.telemetry.endpoint import MetricsEndpoint
from services.kit.telemetry.metrics import timed_operations
from tests.services.kit import probe_service
from tests.services.kit.bus.support import unique, wait_for

PROBE = probe_service.DOMAIN.service


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def probe():
    server = DomainServer(probe_service.spec(), host="127.0.0.1", port=0, grace=1.0)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    yield channel
    await channel.close()
    await server.stop()


async def test_rpcs_are_counted_and_timed_by_service_method_and_code(probe):
    ok = dict(service=PROBE, method="Budget", code="OK")
    bad = dict(service=PROBE, method="Invalid", code="INVALID_ARGUMENT")
    before_ok, before_bad = value("agora_rpc_server_duration_seconds_count", **ok), \
        value("agora_rpc_server_duration_seconds_count", **bad)
    for _ in range(3):
        await probe.unary_unary(f"/{PROBE}/Budget")(b"", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError):
        await probe.unary_unary(f"/{PROBE}/Invalid")(b"", timeout=5)
    assert value("agora_rpc_server_duration_seconds_count", **ok) - before_ok == 3
    assert value("agora_rpc_server_duration_seconds_count", **bad) - before_bad == 1
    assert value("agora_rpc_server_duration_seconds_bucket", **ok, le="+Inf") >= 3


async def test_open_streams_are_a_gauge_per_method(probe):
    labels = dict(service=PROBE, method="Ticks")
    before = value("agora_rpc_server_streams_active", **labels)
    stream = probe.unary_stream(f"/{PROBE}/Ticks")(b"", timeout=10)
    await stream.read()
    assert value("agora_rpc_server_streams_active", **labels) == before + 1
    stream.cancel()
    await wait_for(lambda: value("agora_rpc_server_streams_active", **labels) == before, 5,
                   "the gauge to drop")
    assert value("agora_rpc_server_duration_seconds_count", **labels, code="CANCELLED") >= 1


async def test_feed_subscribers_are_counted_and_overflows_too():
    feed: SnapshotFeed[str, int] = SnapshotFeed(name="tests-feed", min_interval=0)
    log: SequencedLog[str, str] = SequencedLog(capacity=2, name="tests-log")
    snapshot = dict(feed="tests-feed", kind="snapshot")
    before = value("agora_stream_subscribers", **snapshot)
    feed.publish("k", 1)
    reader = feed.subscribe("k")
    assert await reader.__anext__() == 1
    assert value("agora_stream_subscribers", **snapshot) == before + 1
    await reader.aclose()
    assert value("agora_stream_subscribers", **snapshot) == before

    overflows = value("agora_stream_overflows_total", feed="tests-log")
    slow = log.subscribe("room")
    log.append("room", 1, "a")
    assert await slow.__anext__() == (1, "a")
    assert value("agora_stream_subscribers", feed="tests-log", kind="log") == 1
    for seq in range(2, 6):
        log.append("room", seq, "x")
    with pytest.raises(ResourceExhausted):
        await slow.__anext__()
    assert value("agora_stream_overflows_total", feed="tests-log") == overflows + 1
    assert value("agora_stream_subscribers", feed="tests-log", kind="log") == 0


async def test_bus_publish_consume_retry_dead_letter_and_pending():
    bus = InProcessBus()
    await bus.start()
    group, kind = unique("metrics"), "tests.metric.counted"
    failures = {"bad": 2}  # "bad" fails twice: one retry, then a dead letter (max_attempts=2)
    gate = asyncio.Event()

    async def handler(envelope) -> None:
        await gate.wait()
        if envelope.key in failures:
            raise RuntimeError("no")

    await bus.subscribe(group, ["tests.metric.*"], handler, max_attempts=2, retry_delay=0.01)
    published = value("agora_bus_published_total", type=kind)
    await bus.publish([new_envelope(kind, "tests", key, StringValue(value=key)) for key in ("a", "b", "bad")])
    assert value("agora_bus_published_total", type=kind) == published + 3
    assert value("agora_bus_consumer_pending", group=group) == 3
    gate.set()
    await wait_for(lambda: value("agora_bus_dead_letters_total", group=group, type=kind) == 1, 5,
                   "the dead letter")
    assert value("agora_bus_consumed_total", group=group, type=kind, outcome="ok") == 2
    assert value("agora_bus_consumed_total", group=group, type=kind, outcome="failed") == 2
    assert value("agora_bus_retries_total", group=group, type=kind) == 1
    assert value("agora_bus_consumer_pending", group=group) == 0
    assert value("agora_bus_consumer_lag_seconds_count", group=group) == 4
    assert value("agora_bus_handle_duration_seconds_count", group=group) == 4
    await bus.close()


@timed_operations
class Shelf:
    """A store adapter in miniature: its method names become the `operation` label."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    async def create(self) -> None:
        await self.db.transaction(lambda c: c.execute("CREATE TABLE IF NOT EXISTS books (title TEXT)"))

    async def count(self) -> int:
        return await self._read(lambda c: c.execute("SELECT count(*) FROM books").fetchone()[0])

    async def _read(self, fn):  # a private helper: the public caller names the operation
        return await self.db.run(fn)

    async def broken(self) -> None:
        await self.db.run(lambda c: c.execute("SELECT * FROM no_such_table"))


async def test_store_latency_is_labelled_by_the_store_method(tmp_path):
    shelf = Shelf(SqliteDatabase(tmp_path / "shelf.sqlite3"))
    before = value("agora_store_duration_seconds_count", backend="sqlite", operation="Shelf.count",
                   outcome="ok")
    await shelf.create()
    assert await shelf.count() == 0
    assert await shelf.count() == 0
    with pytest.raises(sqlite3.OperationalError):
        await shelf.broken()
    assert value("agora_store_duration_seconds_count", backend="sqlite", operation="Shelf.count",
                 outcome="ok") \
        == before + 2
    assert value("agora_store_duration_seconds_count", backend="sqlite", operation="Shelf.create",
                 outcome="ok") >= 1
    assert value("agora_store_duration_seconds_count", backend="sqlite", operation="Shelf.broken",
                 outcome="error") >= 1
    assert await shelf.db.ping()
    assert value("agora_store_duration_seconds_count", backend="sqlite", operation="ping", outcome="ok") >= 1
    await shelf.db.close()


def _scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


async def test_a_grpc_process_serves_metrics_over_http(probe):
    await probe.unary_unary(f"/{PROBE}/Budget")(b"", timeout=5)
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    try:
        families = await asyncio.to_thread(_scrape, endpoint.url)
    finally:
        endpoint.close()
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    samples = families["agora_rpc_server_duration_seconds"]
    assert any(s.labels == {"service": PROBE, "method": "Budget", "code": "OK", "le": "+Inf"}
               for s in samples)


async def test_a_taken_metrics_port_is_a_clear_error_unless_it_was_only_the_default():
    first = MetricsEndpoint("127.0.0.1", 0)
    try:
        with pytest.raises(RuntimeError, match="AGORA_METRICS_PORT"):
            MetricsEndpoint("127.0.0.1", first.port)
        second = MetricsEndpoint("127.0.0.1", first.port, fallback=True)
        assert second.port not in (0, first.port)
        second.close()
    finally:
        first.close()


def test_metrics_ports_per_process():
    settings = Settings.from_env({})
    assert settings.metrics_port_for(None) == 9464
    assert settings.metrics_port_for("orders") == 60057
    assert Settings.from_env({"AGORA_GRPC_PORT": "7001"}).metrics_port_for("chat") == 17001  # replicas differ
    assert Settings.from_env({"AGORA_PORT_OFFSET": "9000"}).metrics_port_for("orders") == 0  # past 65535: any
    assert Settings.from_env({"AGORA_PORT_OFFSET": "100"}).metrics_port_for(None) == 9564
    assert Settings.from_env({"AGORA_METRICS_PORT": "9100"}).metrics_port_for("orders") == 9100
    assert Settings.from_env({"AGORA_METRICS_PORT": "-1"}).metrics_port_for(None) is None


async def test_the_launcher_serves_and_announces_metrics():
    from services.mesh.launcher import run

    lines: list[str] = []
    stop = asyncio.Event()

    async def build(runtime):
        return probe_service.spec()

    settings = Settings.from_env({}, grpc_port=_free_port())
    task = asyncio.create_task(run(settings, [(probe_service.DOMAIN, build)], gateway=False, stop=stop,
                                   announce=lines.append, metrics_port=0))
    await wait_for(lambda: any(line.startswith("ready") for line in lines) or task.done(), 10, "the launcher")
    try:
        url = next(line.split()[2] for line in lines if line.startswith("metrics"))
        families = await asyncio.to_thread(_scrape, url)
        assert "agora_rpc_server_duration_seconds" in families
    finally:
        stop.set()
        assert await task == 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
