"""The RabbitMQ topology, written down once: what each connection declares before it publishes or consumes.

All durable, messages persistent:

    agora.events (topic) --pattern--> agora.<group>           one queue per consumer group
    agora.<group>.retry.<ms>   TTL <ms>, then dead-lettered back to agora.<group> via the default
                               exchange (not agora.events: a retry must not reach the other groups)
    agora.dead-letters (topic) --#--> agora.dead-letters       routing key = the group that gave up

A declaration is idempotent, so every connection declares what it relies on (the publisher the
events exchange, a subscription its group's queues, the admin tools the dead letters) whichever
came first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.kit.bus.port import EXCHANGE

DEAD_EXCHANGE = "agora.dead-letters"
DEAD_QUEUE = "agora.dead-letters"
EPHEMERAL_EXPIRY_MS = 60_000

_GROUP = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")


def queue_name(group: str) -> str:
    return f"agora.{group}"


def retry_queue_name(group: str, delay: float) -> str:
    return f"agora.{group}.retry.{round(delay * 1000)}"


def retry_queue_names(group: str, delays: Iterable[float]) -> set[str]:
    return {retry_queue_name(group, d) for d in delays}


def check_group(group: str) -> str:
    if not _GROUP.match(group):
        raise ValueError(f"consumer group {group!r}: use lowercase letters, digits, '.', '_' or '-'")
    return group


@dataclass(frozen=True)
class Exchange:
    name: str

    def declare(self, channel: Any, **callback: Callable) -> Any:
        return channel.exchange_declare(self.name, "topic", durable=True, **callback)


@dataclass(frozen=True)
class Queue:
    name: str
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)

    def declare(self, channel: Any, **callback: Callable) -> Any:
        return channel.queue_declare(self.name, durable=self.durable, auto_delete=self.auto_delete,
                                     arguments=self.arguments or None, **callback)


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    pattern: str

    def declare(self, channel: Any, **callback: Callable) -> Any:
        return channel.queue_bind(self.queue, self.exchange, self.pattern, **callback)


Declaration = Exchange | Queue | Binding

EVENTS: tuple[Declaration, ...] = (Exchange(EXCHANGE),)
DEAD_LETTERS: tuple[Declaration, ...] = (
    Exchange(DEAD_EXCHANGE),
    Queue(DEAD_QUEUE),
    Binding(DEAD_QUEUE, DEAD_EXCHANGE, "#"),
)


def group_queues(group: str, patterns: Sequence[str], delays: Iterable[float], *,
                 ephemeral: bool = False) -> tuple[Declaration, ...]:
    """A consumer group's queue, its bindings and its retry queues, with what they dead-letter to."""
    queue = queue_name(group)
    # A message the consumer rejects outright (not an Envelope) goes straight to the dead letters.
    arguments: dict[str, Any] = {"x-dead-letter-exchange": DEAD_EXCHANGE, "x-dead-letter-routing-key": group}
    if ephemeral:
        # A replica that died without cancelling leaves no queue behind for long.
        arguments["x-expires"] = EPHEMERAL_EXPIRY_MS
    # Back to the group's own queue through the default exchange when the delay is up.
    back = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}
    retries = [Queue(retry_queue_name(group, d), arguments={"x-message-ttl": round(d * 1000), **back})
               for d in sorted(set(delays))]
    return (
        *EVENTS,
        *DEAD_LETTERS,
        Queue(queue, durable=not ephemeral, auto_delete=ephemeral, arguments=arguments),
        *(Binding(queue, EXCHANGE, p) for p in patterns),
        *retries,
    )


def steps(channel: Any, declarations: Iterable[Declaration]) -> list[Callable[[Callable], Any]]:
    """The declarations as callback-style steps on an asynchronous channel (for link.chain)."""
    return [lambda cb, d=d: d.declare(channel, callback=cb) for d in declarations]


def declare(channel: Any, declarations: Iterable[Declaration]) -> dict[str, Any]:
    """Declare on a blocking channel; the broker's answer per queue (message counts), by name."""
    answers = {}
    for d in declarations:
        answer = d.declare(channel)
        if isinstance(d, Queue):
            answers[d.name] = answer
    return answers
