"""The RabbitMQ adapter of the event bus (pika), kept on its own threads so the asyncio loop never blocks.

Two connections, each driven by a pika SelectConnection on its own thread (link.py): one publishes
(publisher.py: asynchronous confirms, many messages in flight), one consumes (subscription.py: a
channel per subscription). Work crosses between the threads and the loop in batches: a callback
per burst, not per message. Both reconnect with back-off; publishes not yet confirmed when a
connection drops are sent again, so a consumer may see an event twice and must be idempotent
(services.kit.bus.stores). The queues and exchanges are in topology.py, the AMQP message format
in messages.py, the operators' dead-letter tools in admin.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pika
from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus import messages, topology
from services.kit.bus.admin import RabbitAdmin
from services.kit.bus.link import Link
from services.kit.bus.messages import CONTENT_TYPE, PERSISTENT
from services.kit.bus.port import DEFAULT_MAX_ATTEMPTS, DEFAULT_PREFETCH, DEFAULT_RETRY_DELAY, Handler
from services.kit.bus.publisher import Batch, Outgoing, Publisher
from services.kit.bus.subscription import RabbitSubscription
from services.kit.telemetry import metrics

__all__ = ["CONTENT_TYPE", "PERSISTENT", "RabbitBus", "RabbitSubscription"]

log = logging.getLogger("agora.bus")


class RabbitBus:
    """EventBus over RabbitMQ. See the module docstring for its parts, topology.py for the topology."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, reconnect_max_delay: float = 5.0) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._max_delay = reconnect_max_delay
        self._publisher: Publisher | None = None
        self._consumer_link: Link | None = None
        self._subscriptions: list[RabbitSubscription] = []
        self._retry_queues: dict[str, set[str]] = {}

    async def start(self) -> None:
        self._publisher = Publisher(self._url, self._max_delay)
        self._publisher.link.start()
        ready = await asyncio.to_thread(self._publisher.ready.wait, self._connect_timeout)
        if not ready:
            log.warning("RabbitMQ at %s does not answer yet; publishing waits until it does", self._url)

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.cancel()
        if self._consumer_link is not None:
            await asyncio.to_thread(self._consumer_link.close)
            self._consumer_link = None
        if self._publisher is not None:
            await asyncio.to_thread(self._publisher.link.close)
            self._publisher.fail_pending(ConnectionError("the bus was closed before the broker confirmed"))
            self._publisher = None

    def healthy(self) -> bool:
        publisher = self._publisher
        return (
            publisher is not None and publisher.ready.is_set() and publisher.link.is_open
            and all(s.consuming for s in self._subscriptions)
        )

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if self._publisher is None:
            raise RuntimeError("start() the bus before publishing")
        if not envelopes:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        batch = Batch(loop, future, len(envelopes))
        self._publisher.submit(
            [Outgoing(e.type, e.SerializeToString(), messages.properties(e), batch) for e in envelopes]
        )
        await future
        for e in envelopes:
            metrics.bus_published(e.type).inc()

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
    ) -> RabbitSubscription:
        topology.check_group(group)
        if not patterns:
            raise ValueError("subscribe to at least one pattern")
        new_link = self._consumer_link is None
        if self._consumer_link is None:
            self._consumer_link = Link(self._url, "agora-bus-consumer", self._consumer_open,
                                       self._consumer_lost, self._max_delay)
        link = self._consumer_link
        subscription = RabbitSubscription(link, group, patterns, handler, prefetch, max_attempts, retry_delay,
                                          ephemeral, on_cancelled=self._forget)
        self._subscriptions.append(subscription)
        self._retry_queues.setdefault(group, set()).update(
            topology.retry_queue_names(group, subscription.delays))
        if new_link:
            link.start()
        else:
            link.call(lambda: link.is_open and subscription.open(link.connection))
        try:
            await asyncio.wait_for(asyncio.shield(subscription.ready), self._connect_timeout)
        except asyncio.TimeoutError:
            log.warning("group %s is not consuming yet (broker away?); it will when the broker answers",
                        group)
        return subscription

    async def delete_group(self, group: str) -> None:
        """Remove a consumer group's queues and dead letters (tests, decommissioned consumers)."""
        topology.check_group(group)
        # Retry queues this process declared; the admin adds those of the default policy (other processes').
        await RabbitAdmin(self._url).delete_group(group, self._retry_queues.pop(group, set()))

    def _consumer_open(self, connection: pika.SelectConnection) -> None:
        for subscription in list(self._subscriptions):
            subscription.open(connection)

    def _consumer_lost(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.lost()

    def _forget(self, subscription: RabbitSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
