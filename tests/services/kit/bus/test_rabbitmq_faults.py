"""Fault tests against the real RabbitMQ: broker restart, consumer SIGKILL, poison messages, outbox.

Each restarts the broker or kills a process and checks the one invariant: nothing accepted is
lost, nothing is counted twice. The broker is always left running.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg2
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from services.kit.bus.envelopes import new_envelope, unpack
from services.kit.bus.outbox import OutboxRelay
from services.kit.bus.rabbitmq import RabbitBus
from services.kit.bus.stores.postgres import PostgresOutbox
from tests.realservers import UNDER_CI
from tests.services.kit.bus.support import EffectStore, unique, wait_for

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[4]
N = 10_000


class Broker:
    """stop_app / start_app on the local node (the test machine's broker)."""

    def __init__(self) -> None:
        self.ctl = shutil.which("rabbitmqctl")
        if self.ctl is None:
            message = "rabbitmqctl is not on PATH: cannot restart the broker"
            pytest.fail(message) if UNDER_CI else pytest.skip(message)

    def _run(self, action: str) -> None:
        subprocess.run([self.ctl, action], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        self._run("stop_app")

    def start(self) -> None:
        self._run("start_app")


@pytest.fixture
def broker(amqp_url):
    broker = Broker()
    try:
        yield broker
    finally:
        broker.start()  # idempotent: whatever happened, leave the broker running


@pytest.fixture
async def rabbit(amqp_url):
    buses: list[RabbitBus] = []
    groups: list[str] = []

    async def open_bus() -> RabbitBus:
        bus = RabbitBus(amqp_url, reconnect_max_delay=1.0)
        await bus.start()
        buses.append(bus)
        return bus

    open_bus.groups = groups
    yield open_bus
    for bus in buses:
        await bus.close()
    if buses:
        for group in groups:
            await buses[0].delete_group(group)


def events(topic: str, count: int, keys: int = 50):
    return [new_envelope(f"{topic}.item.done", "tests", f"k{i % keys}", StringValue(value=str(i)))
            for i in range(count)]


async def test_broker_restart_mid_publish_loses_nothing_and_doubles_nothing(rabbit, broker, tmp_path):
    topic, group = unique("restart").replace("-", "_"), unique("restart")
    rabbit.groups.append(group)
    bus = await rabbit()
    store = EffectStore(tmp_path / "effects.db", group)
    writer = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()

    async def handle(envelope):
        await loop.run_in_executor(writer, store.apply, envelope)

    await bus.subscribe(group, [f"{topic}.#"], handle, prefetch=200)
    batch = events(topic, N)
    published = 0

    async def produce():
        nonlocal published
        for i in range(0, N, 100):
            await bus.publish(batch[i:i + 100])
            published += 100
            await asyncio.sleep(0.05)  # a steady producer, so the restart lands mid-stream

    producer = asyncio.create_task(produce())
    await wait_for(lambda: published >= 1500, 60, "the first 1,500 confirmed publishes")
    await asyncio.to_thread(broker.stop)
    stopped_at = published
    await asyncio.sleep(1.0)
    await asyncio.to_thread(broker.start)
    assert stopped_at < N, "the producer finished before the broker stopped; the test proved nothing"

    await asyncio.wait_for(producer, 180)
    await wait_for(lambda: store.counts()[1] == N, 180, f"{N} distinct effects (have {store.counts()})")
    await asyncio.sleep(1.0)  # let any late redelivery arrive: it must have no effect
    assert store.counts() == (N, N)
    writer.shutdown()


async def test_consumer_killed_mid_batch_resumes_without_double_effects(rabbit, amqp_url, tmp_path):
    topic, group = unique("kill").replace("-", "_"), unique("kill")
    rabbit.groups.append(group)
    db = tmp_path / "effects.db"
    store = EffectStore(db, group)

    def consumer() -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.services.kit.bus.consumer_proc", amqp_url, group, f"{topic}.#",
             str(db)],
            cwd=REPO, stdout=subprocess.PIPE, text=True,
        )
        line = process.stdout.readline()
        assert line.strip() == "ready", f"the consumer did not start: {line!r}"
        return process

    first = consumer()
    try:
        bus = await rabbit()
        await bus.publish(events(topic, N))
        await wait_for(lambda: store.counts()[1] >= 2_000, 120, "2,000 effects before the kill")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        killed_at = store.counts()[1]
        assert killed_at < N, "the consumer finished before the kill; the test proved nothing"
    finally:
        if first.poll() is None:
            first.kill()

    second = consumer()
    try:
        await wait_for(lambda: store.counts()[1] == N, 180, f"{N} distinct effects (have {store.counts()})")
        await asyncio.sleep(1.0)
        assert store.counts() == (N, N)
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait(30)


def cli(amqp_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "AGORA_BACKENDS": "real", "AGORA_AMQP_URL": amqp_url}
    return subprocess.run([sys.executable, "-m", "services.mesh", "events", "dead-letters", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True)


async def test_poison_message_is_listed_by_the_cli_and_replays_after_the_fix(rabbit, amqp_url):
    topic, group = unique("poison").replace("-", "_"), unique("poison")
    rabbit.groups.append(group)
    bus = await rabbit()
    attempts: Counter[str] = Counter()
    handled: list[str] = []
    fixed = False

    async def handle(envelope):
        attempts[envelope.id] += 1
        if unpack(envelope, StringValue).value == "poison" and not fixed:
            raise ValueError("no such currency: XXX")
        handled.append(envelope.id)

    await bus.subscribe(group, [f"{topic}.#"], handle, max_attempts=4, retry_delay=0.1)
    poison = new_envelope(f"{topic}.payment.made", "tests", "o-1", StringValue(value="poison"))
    fine = new_envelope(f"{topic}.payment.made", "tests", "o-2", StringValue(value="fine"))
    await bus.publish([poison, fine])

    listed: list[dict] = []

    def dead() -> bool:
        listed[:] = [json.loads(line)
                     for line in cli(amqp_url, "list", "--group", group, "--json").stdout.splitlines()]
        return bool(listed)

    await wait_for(lambda: attempts[poison.id] >= 4, 30, "four attempts at the poison event")
    await wait_for(dead, 30, "the CLI to list the dead letter")
    assert [(x["id"], x["attempts"], x["group"]) for x in listed] == [(poison.id, 4, group)]
    assert "no such currency" in listed[0]["error"]
    assert attempts[poison.id] == 4 and handled == [fine.id]
    assert "no such currency" in cli(amqp_url, "list", "--group", group).stdout  # the table form

    fixed = True
    assert "replayed 1" in cli(amqp_url, "replay", "--group", group, "--id", poison.id).stdout
    await wait_for(lambda: poison.id in handled, 30, "the replayed event to be handled")
    assert cli(amqp_url, "list", "--group", group, "--json").stdout == ""
    assert handled.count(poison.id) == 1


async def test_outbox_write_succeeds_with_the_broker_down_and_is_delivered_after(
    rabbit, broker, postgres_url
):
    topic, group = unique("outbox").replace("-", "_"), unique("outbox")
    rabbit.groups.append(group)
    bus = await rabbit()
    received: list[str] = []

    async def handle(envelope):
        received.append(envelope.id)

    await bus.subscribe(group, [f"{topic}.#"], handle)
    suffix = group.split("-")[0]
    outbox = PostgresOutbox(f"outbox_{suffix}")
    conn = psycopg2.connect(postgres_url)
    outbox.create_schema(conn)
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE orders_{suffix} (id TEXT PRIMARY KEY)")
    relay = OutboxRelay(bus, outbox, lambda: psycopg2.connect(postgres_url))
    await relay.start()
    try:
        await asyncio.to_thread(broker.stop)
        created = new_envelope(f"{topic}.order.created", "orders", "o-42", StringValue(value="o-42"))
        with conn, conn.cursor() as cur:  # the producer's write: state and event, one transaction
            cur.execute(f"INSERT INTO orders_{suffix} VALUES ('o-42')")
            outbox.add(cur, [created])
        relay.wake()
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM orders_{suffix}")
            assert cur.fetchone()[0] == 1, "the write must commit while the broker is down"
        assert received == []
        await asyncio.to_thread(broker.start)
        await wait_for(lambda: received == [created.id], 60, "the outbox event after the broker came back")
        await wait_for(lambda: outbox.unsent(conn) == 0, 30, "the outbox row marked sent")
    finally:
        await relay.stop()
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS orders_{suffix}")
        outbox.drop_schema(conn)
        conn.close()
