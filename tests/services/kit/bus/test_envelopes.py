"""Envelopes: building, unpacking, routing keys, topic patterns; and the in-process bus's edges."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import Int64Value, StringValue

from services.kit.bus import open_bus
from services.kit.bus.envelopes import new_envelope, routing_key, topic_matches, trace_headers, unpack
from services.kit.bus.inprocess import InProcessBus
from services.kit.bus.port import retry_delays
from services.kit.bus.rabbitmq import RabbitBus
from services.kit.config import Settings
from tests.services.kit.bus.support import wait_for


def test_envelope_carries_identity_trace_and_typed_payload():
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    e = new_envelope("polls.vote.cast", "polls", "poll-1", StringValue(value="yes"), {"traceparent": parent})
    assert len(e.id) == 36 and e.occurred_at.seconds > 0
    assert routing_key(e) == "polls.vote.cast" and e.key == "poll-1" and e.source == "polls"
    assert unpack(e, StringValue).value == "yes"
    assert trace_headers(e) == {"traceparent": parent}
    with pytest.raises(ValueError, match="google.protobuf.StringValue"):
        unpack(e, Int64Value)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("orders.order.*", "orders.order.created", True),
        ("orders.order.*", "orders.order.line.added", False),
        ("orders.#", "orders.order.line.added", True),
        ("orders.#", "orders", True),
        ("#", "anything.at.all", True),
        ("*.order.created", "orders.order.created", True),
        ("payments.*", "orders.order", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
    ],
)
def test_topic_patterns_match_like_amqp(pattern, key, matches):
    assert topic_matches(pattern, key) is matches


def test_retry_delays_grow_and_stop_at_the_cap():
    assert retry_delays(4, 0.5) == [0.5, 1.0, 2.0]
    assert retry_delays(1) == []
    assert max(retry_delays(30, 1.0)) == 300.0


def test_open_bus_follows_the_backends_setting():
    assert isinstance(open_bus(Settings.from_env({})), InProcessBus)
    assert isinstance(open_bus(Settings.from_env({"AGORA_BACKENDS": "real"})), RabbitBus)


async def test_in_process_group_keeps_events_while_nobody_subscribes():
    bus = InProcessBus()
    await bus.start()
    seen: list[str] = []

    async def handle(envelope):
        seen.append(envelope.key)

    subscription = await bus.subscribe("tally", ["polls.#"], handle)
    await subscription.cancel()
    await bus.publish([new_envelope("polls.vote.cast", "polls", k, StringValue()) for k in "abc"])
    assert seen == []
    await bus.subscribe("tally", ["polls.#"], handle)
    await wait_for(lambda: len(seen) == 3, 5, "the queued events")
    assert seen == ["a", "b", "c"]
    await bus.close()
    assert not bus.healthy()
