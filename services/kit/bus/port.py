"""The event bus port: what a domain service may ask of the bus, whichever adapter is behind it.

Delivery is at least once. A handler that returns has had its effect committed, so the message
is acknowledged; a handler that raises is retried with a growing delay and, after
`max_attempts` failures, parked as a dead letter that an operator can list and replay
(services.kit.bus.admin: operators' tools, not part of this port).
Events that share a key reach a consumer group's handler in the order they were published
(retries excepted: a failed event is retried after the ones behind it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from agora.events.v1.envelope_pb2 import Envelope

Handler = Callable[[Envelope], Awaitable[None]]

EXCHANGE = "agora.events"
DEFAULT_PREFETCH = 64
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_DELAY = 1.0  # seconds before the second attempt; doubles per attempt
MAX_RETRY_DELAY = 300.0


def retry_delays(max_attempts: int, first: float = DEFAULT_RETRY_DELAY) -> list[float]:
    """Delay before attempts 2..max_attempts: first, 2*first, 4*first ... capped at MAX_RETRY_DELAY."""
    return [min(first * 2**n, MAX_RETRY_DELAY) for n in range(max(max_attempts - 1, 0))]


@dataclass(frozen=True)
class DeadLetter:
    """An event a consumer group gave up on after its last failed attempt."""

    id: str  # the envelope id (the AMQP message id when the body could not be decoded)
    group: str
    type: str
    key: str
    attempts: int
    error: str
    envelope: Envelope | None  # None when the body was not a valid Envelope

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "group": self.group,
            "type": self.type,
            "key": self.key,
            "attempts": self.attempts,
            "error": self.error,
        }


class Subscription(Protocol):
    async def cancel(self) -> None:
        """Stop consuming; finish the handlers already running, leave the rest queued for the group."""


class EventBus(Protocol):
    async def start(self) -> None:
        """Connect. Returns once connected, or after a bounded wait while the broker is away
        (the adapter keeps reconnecting in the background; `healthy()` tells which)."""

    async def close(self) -> None:
        """Cancel subscriptions (running handlers finish first) and disconnect."""

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish durably; returns once the broker has confirmed every envelope.

        While the broker is away this waits (the envelopes are re-sent on reconnect). A producer
        that must not wait writes to its outbox instead (services.kit.bus.outbox)."""

    async def subscribe(
        self,
        group: str,
        patterns: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        ephemeral: bool = False,
    ) -> Subscription:
        """Deliver events whose type matches any topic pattern (`*` one word, `#` any) to `handler`.

        `ephemeral=True` is for one replica's live fan-out (chat rooms, auction watchers on every
        replica): its queue lives only while the replica does (no retries; a failure dead-letters),
        so `group` must be unique per replica (see `replica_group`).

        `group` names a durable queue shared by every replica of one consumer: each event reaches
        one replica of each group. `prefetch` bounds the events in flight. A failing event is
        retried after `retry_delay`, then twice that, and so on, up to `max_attempts` attempts."""

    def healthy(self) -> bool:
        """True while the bus can publish and its subscriptions are consuming."""


def replica_group(base: str) -> str:
    """A consumer group name unique to this process, for ephemeral per-replica subscriptions."""
    import os
    import socket

    return f"{base}.{socket.gethostname()}-{os.getpid()}".lower().replace("_", "-")
