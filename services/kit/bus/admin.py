"""Operator tools for dead letters (list, replay, discard) and for removing a consumer group's queues.

Not part of the runtime `EventBus` port: a domain service never calls these. On RabbitMQ they are
rare and operator-driven, so each opens a short-lived blocking connection in a worker thread.
The in-process bus keeps its dead letters in its own memory and offers the same methods itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Literal, Protocol

import pika
from pika.spec import BasicProperties

from services.kit.bus import messages, topology
from services.kit.bus.port import DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAY, DeadLetter, retry_delays

if TYPE_CHECKING:
    from services.kit.config import Settings

log = logging.getLogger("agora.bus")

Action = Literal["keep", "replay", "discard"]
# The retry queues a group has under the default policy, whichever process declared them.
_DEFAULT_DELAYS = retry_delays(DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAY)


class DeadLetterAdmin(Protocol):
    async def dead_letters(self, group: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters, oldest first, without removing them."""

    async def replay_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        """Send dead letters (all of `group`'s, or those with these ids) back to their group for a
        fresh round of attempts; returns how many were replayed."""

    async def discard_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        """Drop dead letters for good; returns how many."""


def open_admin(settings: Settings) -> RabbitAdmin:
    """The dead letters of the broker the settings name (the embedded bus keeps its own in memory)."""
    return RabbitAdmin(settings.amqp_url)


class RabbitAdmin:
    """DeadLetterAdmin over RabbitMQ's `agora.dead-letters` queue, and the removal of a group's queues."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def dead_letters(self, group: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        return await asyncio.to_thread(self._sweep, group, None, "keep", limit)

    async def replay_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        return len(await asyncio.to_thread(self._sweep, group, ids, "replay", None))

    async def discard_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        return len(await asyncio.to_thread(self._sweep, group, ids, "discard", None))

    async def delete_group(self, group: str, retry_queues: Iterable[str] = ()) -> None:
        """Remove a consumer group's dead letters and queues: its own, the retry queues named, and
        those of the default retry policy (tests, decommissioned consumers)."""
        topology.check_group(group)
        await self.discard_dead_letters(group)
        retry = {*retry_queues, *topology.retry_queue_names(group, _DEFAULT_DELAYS)}
        names = [topology.queue_name(group), *sorted(retry)]

        def delete() -> None:
            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            try:
                channel = connection.channel()
                for name in names:
                    channel.queue_delete(name)
            finally:
                connection.close()

        await asyncio.to_thread(delete)

    def _sweep(self, group: str | None, ids: Collection[str] | None, action: Action,
               limit: int | None) -> list[DeadLetter]:
        """Read the dead-letter queue once through; act on the chosen letters, leave the others.

        Letters are taken unacknowledged; closing the channel puts back every one not acted on,
        so listing never loses a message."""
        chosen: list[DeadLetter] = []
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            declared = topology.declare(channel, topology.DEAD_LETTERS)[topology.DEAD_QUEUE]
            for _ in range(declared.method.message_count):
                method, properties, body = channel.basic_get(topology.DEAD_QUEUE, auto_ack=False)
                if method is None:
                    break
                letter = dead_letter(method.routing_key, properties, body)
                other_group = group is not None and letter.group != group
                if other_group or (ids is not None and letter.id not in ids):
                    continue
                if action == "replay":
                    properties.headers = messages.without_death(properties.headers)
                    queue = topology.queue_name(letter.group)
                    try:
                        # Straight to the group's queue (default exchange): the other groups had it already.
                        channel.basic_publish("", queue, body, properties, mandatory=True)
                    except pika.exceptions.UnroutableError:
                        log.error("cannot replay %s: queue %s is gone", letter.id, queue)
                        continue
                if action in ("replay", "discard"):
                    channel.basic_ack(method.delivery_tag)
                chosen.append(letter)
                if limit is not None and len(chosen) >= limit:
                    break
        finally:
            connection.close()
        return chosen


def dead_letter(routing_key: str, properties: BasicProperties, body: bytes) -> DeadLetter:
    """A message of the dead-letter queue as a DeadLetter (its routing key is the group)."""
    headers = properties.headers or {}
    error = messages.error(properties)
    if error is None:  # rejected by the broker's dead-lettering, not by a handler
        deaths = headers.get("x-death") or [{}]
        error = f"rejected by the consumer ({deaths[0].get('reason', 'unknown')}): not an Envelope"
    envelope = messages.decode(body)
    return DeadLetter(
        id=(envelope.id if envelope is not None and envelope.id else properties.message_id) or "",
        group=routing_key,
        type=envelope.type if envelope is not None else (properties.type or ""),
        key=envelope.key if envelope is not None else "",
        attempts=messages.attempt(properties),
        error=str(error),
        envelope=envelope,
    )
