"""One consumer group's RabbitMQ queue, consumed on a channel of the bus's consuming connection.

Deliveries cross from the connection's thread to the asyncio loop in batches (a callback per
burst, not per message), are handled in per-key order, and cross back as settlements: acked,
moved to a retry queue or the dead letters (acked once the broker confirmed the move), or rejected.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pika
from agora.events.v1.envelope_pb2 import Envelope
from pika.spec import Basic, BasicProperties

from services.kit.bus import messages, topology
from services.kit.bus.lanes import KeyedLanes
from services.kit.bus.link import Link, chain, resolve
from services.kit.bus.port import Handler, retry_delays
from services.kit.telemetry import messaging, metrics

log = logging.getLogger("agora.bus")


class Settlement(enum.Enum):
    """What becomes of a delivery once the loop is done with it."""

    ACK = "ack"  # handled
    RETRY = "retry"  # failed with attempts left: to the group's retry queue for the next delay
    DEAD = "dead"  # failed its last attempt: to the dead letters
    REJECT = "reject"  # not an Envelope: rejected, and the broker dead-letters it


@dataclass(slots=True)
class Delivery:
    channel: Any
    tag: int
    properties: BasicProperties
    envelope: Envelope | None
    attempt: int


class RabbitSubscription:
    """A consumer group's subscription on `link`; `on_cancelled(self)` runs once it has stopped."""

    def __init__(self, link: Link, group: str, patterns: Sequence[str], handler: Handler,
                 prefetch: int, max_attempts: int, retry_delay: float, ephemeral: bool = False, *,
                 on_cancelled: Callable[[RabbitSubscription], None]) -> None:
        self.group, self.patterns, self._handler = group, tuple(patterns), handler
        self.ephemeral = ephemeral
        # A live fan-out is not retried: the store is the truth and a subscriber resumes from it.
        max_attempts = 1 if ephemeral else max_attempts
        self.prefetch, self.max_attempts = max(1, prefetch), max(1, max_attempts)
        self.delays = retry_delays(self.max_attempts, retry_delay)
        self._link = link
        self._on_cancelled = on_cancelled
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future = self._loop.create_future()
        self._lanes: KeyedLanes[Delivery] = KeyedLanes(self._handle)
        self._cancelled = False
        # I/O-thread state
        self._channel: Any = None
        self._publish_tag = 0
        self._awaiting: dict[int, int] = {}  # retry/dead-letter publish tag -> delivery tag it settles
        self._unsettled: dict[int, None] = {}  # delivery tags not yet acked, in delivery order
        # hand-offs between the threads, drained in batches
        self._arrivals: deque[Delivery] = deque()
        self._arrivals_scheduled = False
        self._settlements: deque[tuple[Settlement, Delivery, str]] = deque()
        self._settlements_scheduled = False

    @property
    def consuming(self) -> bool:
        return self._channel is not None and self._channel.is_open

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        await self._link.run(self._stop_consuming)
        await self._lanes.wait_idle(timeout=5.0)
        # What was not handled goes back to the queue when the channel closes: no longer ours.
        metrics.bus_pending(self.group).dec(len(await self._lanes.stop()))
        # Acks queued above reach the I/O thread before the close: calls run in order.
        await self._link.run(self._close_channel)
        self._on_cancelled(self)

    # -- I/O thread
    def open(self, connection: pika.SelectConnection) -> None:
        if not self._cancelled and connection.is_open:
            connection.channel(on_open_callback=self._channel_open)

    def lost(self) -> None:
        self._channel = None

    def _channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._channel_closed)
        declarations = topology.group_queues(self.group, self.patterns, self.delays, ephemeral=self.ephemeral)
        steps = [
            *topology.steps(channel, declarations),
            lambda cb: channel.basic_qos(prefetch_count=self.prefetch, callback=cb),
            lambda cb: channel.confirm_delivery(
                ack_nack_callback=functools.partial(self._confirmed, channel), callback=cb),
            functools.partial(self._adopt, channel),
            lambda cb: channel.basic_consume(topology.queue_name(self.group), self._on_message,
                                             auto_ack=False, callback=cb),
        ]
        chain(steps, functools.partial(self._consuming, channel))

    def _adopt(self, channel: Any, next_step: Callable) -> None:
        # Before basic_consume: deliveries may follow the ConsumeOk immediately.
        self._channel, self._publish_tag = channel, 0
        self._awaiting.clear()
        self._unsettled.clear()
        next_step()

    def _consuming(self, channel: Any) -> None:
        log.info("consuming %s for %s", topology.queue_name(self.group), ", ".join(self.patterns))
        self._loop.call_soon_threadsafe(resolve, self.ready)

    def _channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self._channel:
            self._channel = None
        connection = self._link.connection
        if not self._cancelled and connection is not None and connection.is_open:
            log.warning("amqp channel of %s closed (%s); reopening", self.group, reason)
            self._link.call_later(1.0, lambda: self.open(connection))

    def _stop_consuming(self) -> None:
        channel = self._channel
        if channel is not None and channel.is_open:
            for tag in list(channel.consumer_tags):
                channel.basic_cancel(tag)

    def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None and channel.is_open:
            channel.close()

    def _on_message(self, channel: Any, method: Any, properties: BasicProperties, body: bytes) -> None:
        envelope = messages.decode(body)
        attempt = messages.attempt(properties)
        if channel is self._channel:
            self._unsettled[method.delivery_tag] = None
        self._arrivals.append(Delivery(channel, method.delivery_tag, properties, envelope, attempt))
        if not self._arrivals_scheduled:
            self._arrivals_scheduled = True
            self._loop.call_soon_threadsafe(self._take_arrivals)

    def _settle_all(self) -> None:
        self._settlements_scheduled = False
        channel = self._channel
        acks: set[int] = set()
        while self._settlements:
            outcome, delivery, error = self._settlements.popleft()
            # A delivery tag means nothing on a newer channel: the broker redelivers instead.
            if delivery.channel is not channel or not channel.is_open:
                continue
            if outcome is Settlement.ACK:
                acks.add(delivery.tag)
            elif outcome is Settlement.REJECT:
                self._unsettled.pop(delivery.tag, None)
                channel.basic_reject(delivery.tag, requeue=False)
            else:
                self._republish(channel, outcome, delivery, error)
        if acks:
            self._ack(channel, acks)

    def _ack(self, channel: Any, tags: set[int]) -> None:
        """One multiple-ack for the run of oldest deliveries all done, single acks for the rest:
        far fewer frames for the broker than one ack per message."""
        run: list[int] = []
        for tag in self._unsettled:
            if tag not in tags:
                break
            run.append(tag)
        if run:
            for tag in run:
                del self._unsettled[tag]
                tags.discard(tag)
            channel.basic_ack(run[-1], multiple=True)
        for tag in tags:
            self._unsettled.pop(tag, None)
            channel.basic_ack(tag)

    def _republish(self, channel: Any, outcome: Settlement, delivery: Delivery, error: str) -> None:
        """Move a failed delivery to its retry queue or the dead letters; ack it once confirmed."""
        headers = dict(delivery.properties.headers or {})
        if outcome is Settlement.RETRY:
            headers[messages.ATTEMPT] = delivery.attempt + 1
            exchange = ""
            key = topology.retry_queue_name(self.group, self.delays[delivery.attempt - 1])
        else:
            headers[messages.ATTEMPT] = delivery.attempt
            headers[messages.ERROR] = error[:2000]
            exchange, key = topology.DEAD_EXCHANGE, self.group
        body = delivery.envelope.SerializeToString() if delivery.envelope is not None else b""
        channel.basic_publish(exchange, key, body, messages.resent(delivery.properties, headers))
        self._publish_tag += 1
        self._awaiting[self._publish_tag] = delivery.tag

    def _confirmed(self, channel: Any, frame: Any) -> None:
        if channel is not self._channel:
            return
        method = frame.method
        if method.multiple:
            tags = [t for t in self._awaiting if t <= method.delivery_tag]
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            delivery_tag = self._awaiting.pop(tag, None)
            if delivery_tag is None:
                continue
            self._unsettled.pop(delivery_tag, None)
            if isinstance(method, Basic.Ack):
                channel.basic_ack(delivery_tag)
            else:
                channel.basic_nack(delivery_tag, requeue=True)

    # -- event loop
    def _take_arrivals(self) -> None:
        self._arrivals_scheduled = False  # before draining, so a later arrival schedules anew
        while self._arrivals:
            delivery = self._arrivals.popleft()
            if delivery.envelope is None:
                log.error("%s: message %s is not an Envelope; dead-lettered", self.group,
                          delivery.properties.message_id)
                metrics.bus_dead_letters(self.group, delivery.properties.type or "").inc()
                self._settle(Settlement.REJECT, delivery)
            else:
                metrics.bus_pending(self.group).inc()
                self._lanes.put(delivery.envelope.key, delivery)

    async def _handle(self, delivery: Delivery) -> None:
        envelope = delivery.envelope
        assert envelope is not None
        try:
            await messaging.consume(self.group, envelope, self._handler, delivery.attempt)
        except Exception as exc:  # noqa: BLE001 - the handler's failure is the event's, not the bus's
            error = f"{type(exc).__name__}: {exc}"
            if delivery.attempt < self.max_attempts:
                log.warning("event %s (%s) failed in %s, attempt %d: %s", envelope.id, envelope.type,
                            self.group, delivery.attempt, error)
                metrics.bus_retries(self.group, envelope.type).inc()
                self._settle(Settlement.RETRY, delivery, error)
            else:
                log.error("event %s (%s) dead-lettered by %s after %d attempts: %s", envelope.id,
                          envelope.type, self.group, delivery.attempt, error)
                metrics.bus_dead_letters(self.group, envelope.type).inc()
                self._settle(Settlement.DEAD, delivery, error)
        else:
            self._settle(Settlement.ACK, delivery)
        metrics.bus_pending(self.group).dec()

    def _settle(self, outcome: Settlement, delivery: Delivery, error: str = "") -> None:
        self._settlements.append((outcome, delivery, error))
        if not self._settlements_scheduled:
            self._settlements_scheduled = True
            self._link.call(self._settle_all)
