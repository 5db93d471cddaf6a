"""The bus contract: the same tests against the in-process adapter and real RabbitMQ."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import Counter, defaultdict

from google.protobuf.wrappers_pb2 import StringValue

from services.kit.bus.envelopes import new_envelope, unpack
from services.kit.bus.outbox import OutboxRelay
from services.kit.bus.stores.sqlite import SqliteOutbox
from tests.services.kit.bus.support import EffectStore, unique, wait_for


def event(type: str, key: str = "", value: str = ""):
    return new_envelope(type, "tests", key, StringValue(value=value))


async def test_publish_reaches_each_matching_group(bus, groups):
    topic = unique("orders").replace("-", "_")
    seen: dict[str, list[str]] = defaultdict(list)

    def recorder(name):
        async def handle(envelope):
            seen[name].append(envelope.type)
        return handle

    await bus.subscribe(groups("orders"), [f"{topic}.order.*"], recorder("orders"))
    await bus.subscribe(groups("audit"), [f"{topic}.#"], recorder("audit"))
    await bus.publish([event(f"{topic}.order.created"), event(f"{topic}.order.paid"),
                       event(f"{topic}.payment.failed"), event(f"{topic}.order.line.added")])

    await wait_for(lambda: len(seen["audit"]) == 4 and len(seen["orders"]) == 2, 20, "both groups")
    assert sorted(seen["orders"]) == [f"{topic}.order.created", f"{topic}.order.paid"]
    assert len(seen["audit"]) == 4


async def test_events_with_one_key_are_handled_in_order(bus, groups):
    topic = unique("ledger").replace("-", "_")
    handled: dict[str, list[int]] = defaultdict(list)

    async def handle(envelope):
        await asyncio.sleep(random.random() / 500)  # uneven handlers must not reorder a key
        handled[envelope.key].append(int(unpack(envelope, StringValue).value))

    await bus.subscribe(groups("ledger"), [f"{topic}.#"], handle, prefetch=32)
    keys = ["a", "b", "c", "d"]
    await bus.publish([event(f"{topic}.entry.made", k, str(i)) for i in range(60) for k in keys])

    await wait_for(lambda: sum(map(len, handled.values())) == 240, 30, "240 events")
    for key in keys:
        assert handled[key] == list(range(60)), key


async def test_failing_event_is_retried_until_it_succeeds(bus, admin, groups):
    topic = unique("flaky").replace("-", "_")
    attempts: Counter[str] = Counter()
    done: list[str] = []

    async def handle(envelope):
        attempts[envelope.id] += 1
        if attempts[envelope.id] < 3:
            raise RuntimeError("downstream not ready")
        done.append(envelope.id)

    await bus.subscribe(groups("flaky"), [f"{topic}.#"], handle, max_attempts=4, retry_delay=0.05)
    envelope = event(f"{topic}.thing.happened", "k")
    await bus.publish([envelope])

    await wait_for(lambda: done == [envelope.id], 20, "the third attempt to succeed")
    assert attempts[envelope.id] == 3
    assert [d for d in await admin.dead_letters() if d.id == envelope.id] == []


async def test_poison_event_is_dead_lettered_and_replays_once_fixed(bus, admin, groups):
    topic = unique("poison").replace("-", "_")
    group = groups("poison")
    attempts: Counter[str] = Counter()
    handled: list[str] = []
    fixed = False

    async def handle(envelope):
        attempts[envelope.id] += 1
        if unpack(envelope, StringValue).value == "poison" and not fixed:
            raise ValueError("cannot parse the amount")
        handled.append(envelope.id)

    await bus.subscribe(group, [f"{topic}.#"], handle, max_attempts=3, retry_delay=0.05)
    poison, good = event(f"{topic}.payment.made", "p", "poison"), event(f"{topic}.payment.made", "g", "fine")
    await bus.publish([poison, good])

    async def letters():
        return await admin.dead_letters(group)

    dead: list = []
    for _ in range(200):
        dead = await letters()
        if dead:
            break
        await asyncio.sleep(0.05)
    assert [d.id for d in dead] == [poison.id], "the poison event never reached the dead letters"
    assert dead[0].attempts == 3 and attempts[poison.id] == 3
    assert "cannot parse the amount" in dead[0].error and dead[0].type == f"{topic}.payment.made"
    assert handled == [good.id]
    assert await letters() == dead, "listing must not consume dead letters"

    fixed = True
    assert await admin.replay_dead_letters(group, {poison.id}) == 1
    await wait_for(lambda: poison.id in handled, 20, "the replayed event")
    assert await letters() == []


async def test_inbox_turns_redelivery_into_no_effect(bus, groups, tmp_path):
    topic = unique("inbox").replace("-", "_")
    group = groups("inbox")
    store = EffectStore(tmp_path / "consumer.db", group)
    seen: list[str] = []

    async def handle(envelope):
        await asyncio.to_thread(store.apply, envelope)
        seen.append(envelope.id)

    await bus.subscribe(group, [f"{topic}.#"], handle)
    once, other = event(f"{topic}.vote.cast", "poll"), event(f"{topic}.vote.cast", "poll")
    await bus.publish([once, other, once, once])  # at-least-once: the same event id three times

    await wait_for(lambda: len(seen) == 4, 20, "four deliveries")
    assert store.counts() == (2, 2)
    assert store.duplicates() == 2


async def test_outbox_relay_publishes_committed_events_only(bus, groups, tmp_path):
    topic = unique("outbox").replace("-", "_")
    received: list[str] = []

    async def handle(envelope):
        received.append(envelope.id)

    await bus.subscribe(groups("outbox"), [f"{topic}.#"], handle)
    outbox = SqliteOutbox()
    path = tmp_path / "producer.db"
    producer = sqlite3.connect(path)
    outbox.create_schema(producer)
    producer.execute("CREATE TABLE polls (id TEXT PRIMARY KEY)")

    committed = [event(f"{topic}.poll.created", f"p{i}") for i in range(3)]
    with producer:  # one transaction: the state change and its events
        producer.executemany("INSERT INTO polls VALUES (?)", [(e.key,) for e in committed])
        outbox.add(producer, committed)
    rolled_back = event(f"{topic}.poll.created", "p9")
    try:
        with producer:
            producer.execute("INSERT INTO polls VALUES ('p9')")
            outbox.add(producer, [rolled_back])
            raise RuntimeError("the producer's change failed")
    except RuntimeError:
        pass

    relay = OutboxRelay(bus, outbox, lambda: sqlite3.connect(path, check_same_thread=False))
    await relay.start()
    try:
        relay.wake()
        await wait_for(lambda: len(received) == 3, 20, "three relayed events")
        await wait_for(lambda: outbox.unsent(producer) == 0, 10, "rows marked sent")
    finally:
        await relay.stop()
    assert sorted(received) == sorted(e.id for e in committed)
    assert rolled_back.id not in received


async def test_ephemeral_groups_give_every_replica_every_event(bus, groups):
    """Live fan-out: two replicas, each with its own ephemeral group, both see all events."""
    topic = unique("chat").replace("-", "_")  # the broker is shared: other tests publish chat.* too
    seen: dict[str, list[str]] = {"a": [], "b": []}
    subs = []
    for replica in seen:
        async def handler(envelope, replica=replica):
            seen[replica].append(envelope.key)

        subs.append(await bus.subscribe(groups(f"fanout-{replica}"), [f"{topic}.message.*"], handler,
                                        ephemeral=True))
    await bus.publish([new_envelope(f"{topic}.message.posted", "chat", f"room-{i}", StringValue(value="hi"))
                       for i in range(20)])
    await wait_for(lambda: all(len(v) == 20 for v in seen.values()), 15, "both replicas to see 20 events")
    for sub in subs:
        await sub.cancel()
    assert sorted(seen["a"]) == sorted(seen["b"]) == sorted(f"room-{i}" for i in range(20))
