"""The RabbitMQ topology as written down in topology.py: what a group declares, and how it is applied."""

from __future__ import annotations

import pytest

from services.kit.bus import topology
from services.kit.bus.port import EXCHANGE
from services.kit.bus.topology import DEAD_EXCHANGE, DEAD_QUEUE, Binding, Exchange, Queue


def test_a_group_declares_its_queue_bindings_retries_and_the_dead_letters():
    declared = topology.group_queues("tally", ["polls.vote.cast", "polls.poll.*"], [1.0, 2.0, 2.0])
    assert declared[:4] == (Exchange(EXCHANGE), Exchange(DEAD_EXCHANGE), Queue(DEAD_QUEUE),
                            Binding(DEAD_QUEUE, DEAD_EXCHANGE, "#"))
    queue = declared[4]
    assert queue == Queue("agora.tally", arguments={"x-dead-letter-exchange": DEAD_EXCHANGE,
                                                    "x-dead-letter-routing-key": "tally"})
    assert declared[5:7] == (Binding("agora.tally", EXCHANGE, "polls.vote.cast"),
                             Binding("agora.tally", EXCHANGE, "polls.poll.*"))
    # One retry queue per distinct delay, back to the group's own queue (not agora.events) when it expires.
    assert declared[7:] == tuple(
        Queue(f"agora.tally.retry.{ms}", arguments={"x-message-ttl": ms, "x-dead-letter-exchange": "",
                                                    "x-dead-letter-routing-key": "agora.tally"})
        for ms in (1000, 2000))


def test_an_ephemeral_group_queue_goes_away_with_its_replica():
    queue = topology.group_queues("chat.host-1", ["chat.#"], [], ephemeral=True)[4]
    assert not queue.durable and queue.auto_delete
    assert queue.arguments["x-expires"] == topology.EPHEMERAL_EXPIRY_MS


class Recorder:
    """A stand-in for a pika channel (outside the mesh): records the declarations made on it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return f"answer to {name} {args[0]}"
        return record


def test_the_same_declarations_apply_to_blocking_and_callback_channels():
    blocking, callbacks = Recorder(), Recorder()
    answers = topology.declare(blocking, topology.DEAD_LETTERS)
    assert answers == {DEAD_QUEUE: f"answer to queue_declare {DEAD_QUEUE}"}
    def callback(_frame=None):
        return None

    for step in topology.steps(callbacks, topology.DEAD_LETTERS):
        step(callback)
    assert [(n, a) for n, a, _ in blocking.calls] == [(n, a) for n, a, _ in callbacks.calls] == [
        ("exchange_declare", (DEAD_EXCHANGE, "topic")),
        ("queue_declare", (DEAD_QUEUE,)),
        ("queue_bind", (DEAD_QUEUE, DEAD_EXCHANGE, "#")),
    ]
    assert all(kwargs["callback"] is callback for _, _, kwargs in callbacks.calls)
    assert all("callback" not in kwargs for _, _, kwargs in blocking.calls)


@pytest.mark.parametrize("group", ["Tally", "", "a b", "-x"])
def test_group_names_are_checked(group):
    with pytest.raises(ValueError, match="consumer group"):
        topology.check_group(group)
