"""The RabbitMQ adapter of the event bus (pika), kept on its own threads so the asyncio loop never blocks.

Topology (all durable, messages persistent):

    agora.events (topic) --pattern--> agora.<group>           one queue per consumer group
    agora.<group>.retry.<ms>   TTL <ms>, then dead-lettered back to agora.<group> via the default
                               exchange (not agora.events: a retry must not reach the other groups)
    agora.dead-letters (topic) --#--> agora.dead-letters       routing key = the group that gave up

Two connections, each driven by a pika SelectConnection on its own thread: one publishes
(asynchronous confirms, many messages in flight), one consumes (a channel per subscription).
Work crosses between the threads and the loop in batches: a callback per burst, not per message.
Both reconnect with back-off; publishes not yet confirmed when a connection drops are sent
again, so a consumer may see an event twice and must be idempotent (services.kit.bus.stores).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import pika
from agora.events.v1.envelope_pb2 import Envelope
from google.protobuf.message import DecodeError
from pika.adapters.select_connection import IOLoop
from pika.spec import Basic, BasicProperties

from services.kit.bus.envelopes import trace_headers
from services.kit.bus.lanes import KeyedLanes
from services.kit.bus.port import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PREFETCH,
    DEFAULT_RETRY_DELAY,
    EXCHANGE,
    DeadLetter,
    Handler,
    retry_delays,
)
from services.kit.telemetry import messaging, metrics

log = logging.getLogger("agora.bus")

DEAD_EXCHANGE = "agora.dead-letters"
DEAD_QUEUE = "agora.dead-letters"
CONTENT_TYPE = "application/x-protobuf; proto=agora.events.v1.Envelope"
ATTEMPT = "x-agora-attempt"  # the attempt a delivery is (absent = 1)
ERROR = "x-agora-error"  # why the last attempt failed (on dead letters)
PERSISTENT = 2

_GROUP = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,200}$")


EPHEMERAL_EXPIRY_MS = 60_000


def queue_name(group: str) -> str:
    return f"agora.{group}"


def retry_queue_name(group: str, delay: float) -> str:
    return f"agora.{group}.retry.{round(delay * 1000)}"


def _check_group(group: str) -> str:
    if not _GROUP.match(group):
        raise ValueError(f"consumer group {group!r}: use lowercase letters, digits, '.', '_' or '-'")
    return group


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class _Link:
    """One AMQP connection on a thread of its own, reopened with back-off whenever it drops.

    Everything touching the connection runs on that thread; other threads hand work over
    with `call`, which the I/O loop runs in order."""

    def __init__(self, url: str, name: str, on_open: Callable[[pika.SelectConnection], None],
                 on_lost: Callable[[], None], max_delay: float) -> None:
        self._parameters = pika.URLParameters(url)
        self._on_open, self._on_lost = on_open, on_lost
        self._max_delay = max_delay
        self._delay = 0.1
        self._closing = False
        self.connection: pika.SelectConnection | None = None
        self.ioloop = IOLoop()
        self._thread = threading.Thread(target=self.ioloop.start, name=name, daemon=True)

    @property
    def is_open(self) -> bool:
        return self.connection is not None and self.connection.is_open

    def start(self) -> None:
        self._thread.start()
        self.call(self._connect)

    def call(self, fn: Callable[[], Any]) -> None:
        self.ioloop.add_callback_threadsafe(fn)

    def close(self, timeout: float = 5.0) -> None:
        self.call(self._shutdown)
        self._thread.join(timeout)

    def _connect(self) -> None:
        if self._closing:
            return
        self.connection = pika.SelectConnection(
            self._parameters,
            on_open_callback=self._opened,
            on_open_error_callback=self._open_failed,
            on_close_callback=self._closed,
            custom_ioloop=self.ioloop,
        )

    def _opened(self, connection: pika.SelectConnection) -> None:
        log.info("amqp connection %s open", self._thread.name)
        self._delay = 0.1
        self._on_open(connection)

    def _open_failed(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self.connection = None
        self._retry(error)

    def _closed(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        self.connection = None
        self._on_lost()
        if self._closing:
            self.ioloop.stop()
        else:
            log.warning("amqp connection %s lost: %s", self._thread.name, reason)
            self._retry(reason)

    def _retry(self, reason: BaseException) -> None:
        if self._closing:
            self.ioloop.stop()
            return
        # Jitter keeps a fleet of replicas from knocking on a restarted broker in lockstep.
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._delay * 2, self._max_delay)
        log.debug("amqp %s reconnecting in %.2fs (%s)", self._thread.name, delay, reason)
        self.ioloop.call_later(delay, self._connect)

    def _shutdown(self) -> None:
        self._closing = True
        if self.connection is not None and not (self.connection.is_closing or self.connection.is_closed):
            self.connection.close()
        elif self.connection is None or self.connection.is_closed:
            self.ioloop.stop()


def _chain(steps: list[Callable[[Callable], Any]], done: Callable[[], None]) -> None:
    """Run pika's callback-style operations one after another, then `done`."""
    pending = deque(steps)

    def advance(_frame: Any = None) -> None:
        if pending:
            pending.popleft()(advance)
        else:
            done()

    advance()


# ---------------------------------------------------------------------------------------------
# Publishing


class _Batch:
    """One publish() call: its future resolves when the broker has confirmed every message."""

    __slots__ = ("future", "left", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, left: int) -> None:
        self.loop, self.future, self.left = loop, future, left

    def confirmed(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.loop.call_soon_threadsafe(_resolve, self.future)


@dataclass(slots=True)
class _Outgoing:
    routing_key: str
    body: bytes
    properties: BasicProperties
    batch: _Batch


class _Publisher:
    """Publishes with asynchronous confirms; after a reconnect, unconfirmed messages go out again."""

    def __init__(self, url: str, max_delay: float) -> None:
        self.link = _Link(url, "agora-bus-publisher", self._connected, self._lost, max_delay)
        self._channel: Any = None
        self._tag = 0
        self._backlog: deque[_Outgoing] = deque()
        self._unconfirmed: dict[int, _Outgoing] = {}
        self.ready = threading.Event()

    # -- any thread
    def submit(self, items: list[_Outgoing]) -> None:
        self.link.call(functools.partial(self._enqueue, items))

    # -- I/O thread
    def _enqueue(self, items: list[_Outgoing]) -> None:
        self._backlog.extend(items)
        self._flush()

    def _connected(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._channel_open)

    def _channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._channel_closed)
        _chain(
            [
                lambda cb: channel.exchange_declare(EXCHANGE, "topic", durable=True, callback=cb),
                lambda cb: channel.confirm_delivery(
                    ack_nack_callback=functools.partial(self._confirmed, channel), callback=cb
                ),
            ],
            functools.partial(self._channel_ready, channel),
        )

    def _channel_ready(self, channel: Any) -> None:
        self._channel, self._tag = channel, 0
        self.ready.set()
        self._flush()

    def _channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is not self._channel and self._channel is not None:
            return
        self._lost()
        connection = self.link.connection
        if connection is not None and connection.is_open:
            log.warning("amqp publisher channel closed (%s); reopening", reason)
            self.link.ioloop.call_later(0.5, lambda: self.link.is_open and self._connected(self.link.connection))

    def _lost(self) -> None:
        self._channel = None
        self.ready.clear()
        # Whatever the broker had not confirmed may be lost: send it again, in its original order.
        if self._unconfirmed:
            self._backlog.extendleft(reversed(list(self._unconfirmed.values())))
            self._unconfirmed.clear()

    def _flush(self) -> None:
        channel = self._channel
        while self._backlog and channel is not None and channel.is_open:
            item = self._backlog[0]
            try:
                channel.basic_publish(EXCHANGE, item.routing_key, item.body, item.properties)
            except Exception as exc:  # noqa: BLE001 - the connection went away under us; the reconnect resends
                log.debug("amqp publish deferred: %s", exc)
                return
            self._backlog.popleft()
            self._tag += 1
            self._unconfirmed[self._tag] = item

    def _confirmed(self, channel: Any, frame: Any) -> None:
        if channel is not self._channel:
            return
        method = frame.method
        if method.multiple:
            done = []
            for tag in self._unconfirmed:
                if tag > method.delivery_tag:
                    break
                done.append(tag)
        else:
            done = [method.delivery_tag]
        items = [self._unconfirmed.pop(tag) for tag in done if tag in self._unconfirmed]
        if isinstance(method, Basic.Ack):
            for item in items:
                item.batch.confirmed()
        else:  # a nack: the broker could not take them; try again
            log.warning("amqp broker nacked %d messages; re-sending", len(items))
            self._backlog.extend(items)
            self._flush()

    def fail_pending(self, error: BaseException) -> None:
        """On close: wake every publish() still waiting."""
        for item in list(self._unconfirmed.values()) + list(self._backlog):
            future = item.batch.future
            item.batch.loop.call_soon_threadsafe(
                lambda f=future: f.done() or f.set_exception(error)
            )
        self._unconfirmed.clear()
        self._backlog.clear()


def _properties(envelope: Envelope) -> BasicProperties:
    headers = trace_headers(envelope) or None
    return BasicProperties(
        delivery_mode=PERSISTENT, content_type=CONTENT_TYPE, message_id=envelope.id, type=envelope.type,
        headers=headers,
    )


# ---------------------------------------------------------------------------------------------
# Consuming


@dataclass(slots=True)
class _Delivery:
    channel: Any
    tag: int
    properties: BasicProperties
    envelope: Envelope | None
    attempt: int


class RabbitSubscription:
    """One consumer group's queue, consumed on a channel of the shared consumer connection."""

    def __init__(self, bus: RabbitBus, group: str, patterns: Sequence[str], handler: Handler,
                 prefetch: int, max_attempts: int, retry_delay: float, ephemeral: bool = False) -> None:
        self.group, self.patterns, self._handler = group, tuple(patterns), handler
        self.ephemeral = ephemeral
        # A live fan-out is not retried: the store is the truth and a subscriber resumes from it.
        max_attempts = 1 if ephemeral else max_attempts
        self.prefetch, self.max_attempts = max(1, prefetch), max(1, max_attempts)
        self.delays = retry_delays(self.max_attempts, retry_delay)
        self._bus = bus
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future = self._loop.create_future()
        self._lanes: KeyedLanes[_Delivery] = KeyedLanes(self._handle)
        self._cancelled = False
        # I/O-thread state
        self._channel: Any = None
        self._publish_tag = 0
        self._awaiting: dict[int, int] = {}  # retry/dead-letter publish tag -> delivery tag it settles
        self._unsettled: dict[int, None] = {}  # delivery tags not yet acked, in delivery order
        # hand-offs between the threads, drained in batches
        self._arrivals: deque[_Delivery] = deque()
        self._arrivals_scheduled = False
        self._settlements: deque[tuple[str, _Delivery, str]] = deque()
        self._settlements_scheduled = False

    @property
    def consuming(self) -> bool:
        return self._channel is not None and self._channel.is_open

    async def cancel(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        await self._bus._on_io_thread(self._stop_consuming)
        await self._lanes.wait_idle(timeout=5.0)
        # What was not handled goes back to the queue when the channel closes: no longer ours.
        metrics.bus_pending(self.group).dec(len(await self._lanes.stop()))
        # Acks queued above reach the I/O thread before the close: calls run in order.
        await self._bus._on_io_thread(self._close_channel)
        self._bus._forget(self)

    # -- I/O thread
    def open(self, connection: pika.SelectConnection) -> None:
        if not self._cancelled and connection.is_open:
            connection.channel(on_open_callback=self._channel_open)

    def _channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._channel_closed)
        queue = queue_name(self.group)
        steps: list[Callable[[Callable], Any]] = [
            lambda cb: channel.exchange_declare(EXCHANGE, "topic", durable=True, callback=cb),
            lambda cb: channel.exchange_declare(DEAD_EXCHANGE, "topic", durable=True, callback=cb),
            lambda cb: channel.queue_declare(DEAD_QUEUE, durable=True, callback=cb),
            lambda cb: channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE, "#", callback=cb),
            # A message the consumer rejects outright (not an Envelope) goes straight to the dead letters.
            lambda cb: channel.queue_declare(
                queue, durable=not self.ephemeral, auto_delete=self.ephemeral, callback=cb,
                arguments={"x-dead-letter-exchange": DEAD_EXCHANGE, "x-dead-letter-routing-key": self.group,
                           # a replica that died without cancelling leaves no queue behind for long
                           **({"x-expires": EPHEMERAL_EXPIRY_MS} if self.ephemeral else {})},
            ),
        ]
        for pattern in self.patterns:
            steps.append(functools.partial(
                lambda p, cb: channel.queue_bind(queue, EXCHANGE, p, callback=cb), pattern))
        for delay in sorted(set(self.delays)):
            steps.append(functools.partial(
                lambda d, cb: channel.queue_declare(
                    retry_queue_name(self.group, d), durable=True, callback=cb,
                    arguments={"x-message-ttl": round(d * 1000), "x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": queue},
                ), delay))
        steps += [
            lambda cb: channel.basic_qos(prefetch_count=self.prefetch, callback=cb),
            lambda cb: channel.confirm_delivery(
                ack_nack_callback=functools.partial(self._confirmed, channel), callback=cb),
            functools.partial(self._adopt, channel),
            lambda cb: channel.basic_consume(queue, self._on_message, auto_ack=False, callback=cb),
        ]
        _chain(steps, functools.partial(self._consuming, channel))

    def _adopt(self, channel: Any, next_step: Callable) -> None:
        # Before basic_consume: deliveries may follow the ConsumeOk immediately.
        self._channel, self._publish_tag = channel, 0
        self._awaiting.clear()
        self._unsettled.clear()
        next_step()

    def _consuming(self, channel: Any) -> None:
        log.info("consuming %s for %s", queue_name(self.group), ", ".join(self.patterns))
        self._loop.call_soon_threadsafe(_resolve, self.ready)

    def _channel_closed(self, channel: Any, reason: BaseException) -> None:
        if channel is self._channel:
            self._channel = None
        connection = self._bus._consumer_link.connection if self._bus._consumer_link else None
        if not self._cancelled and connection is not None and connection.is_open:
            log.warning("amqp channel of %s closed (%s); reopening", self.group, reason)
            self._bus._consumer_link.ioloop.call_later(1.0, lambda: self.open(connection))

    def lost(self) -> None:
        self._channel = None

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
        try:
            envelope: Envelope | None = Envelope.FromString(body)
        except DecodeError:
            envelope = None
        attempt = int((properties.headers or {}).get(ATTEMPT, 1))
        if channel is self._channel:
            self._unsettled[method.delivery_tag] = None
        self._arrivals.append(_Delivery(channel, method.delivery_tag, properties, envelope, attempt))
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
            if outcome == "ack":
                acks.add(delivery.tag)
            elif outcome == "reject":
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

    def _republish(self, channel: Any, outcome: str, delivery: _Delivery, error: str) -> None:
        """Move a failed delivery to its retry queue or the dead letters; ack it once confirmed."""
        old = delivery.properties
        headers = dict(old.headers or {})
        if outcome == "retry":
            headers[ATTEMPT] = delivery.attempt + 1
            exchange, key = "", retry_queue_name(self.group, self.delays[delivery.attempt - 1])
        else:
            headers[ATTEMPT] = delivery.attempt
            headers[ERROR] = error[:2000]
            exchange, key = DEAD_EXCHANGE, self.group
        properties = BasicProperties(
            delivery_mode=PERSISTENT, content_type=old.content_type, message_id=old.message_id,
            type=old.type, headers=headers,
        )
        body = delivery.envelope.SerializeToString() if delivery.envelope is not None else b""
        channel.basic_publish(exchange, key, body, properties)
        self._publish_tag += 1
        self._awaiting[self._publish_tag] = delivery.tag

    def _confirmed(self, channel: Any, frame: Any) -> None:
        if channel is not self._channel:
            return
        method = frame.method
        tags = [t for t in self._awaiting if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
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
                self._settle("reject", delivery)
            else:
                metrics.bus_pending(self.group).inc()
                self._lanes.put(delivery.envelope.key, delivery)

    async def _handle(self, delivery: _Delivery) -> None:
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
                self._settle("retry", delivery, error)
            else:
                log.error("event %s (%s) dead-lettered by %s after %d attempts: %s", envelope.id,
                          envelope.type, self.group, delivery.attempt, error)
                metrics.bus_dead_letters(self.group, envelope.type).inc()
                self._settle("dead", delivery, error)
        else:
            self._settle("ack", delivery)
        metrics.bus_pending(self.group).dec()

    def _settle(self, outcome: str, delivery: _Delivery, error: str = "") -> None:
        self._settlements.append((outcome, delivery, error))
        if not self._settlements_scheduled:
            self._settlements_scheduled = True
            link = self._bus._consumer_link
            if link is not None:
                link.call(self._settle_all)


# ---------------------------------------------------------------------------------------------
# The bus


class RabbitBus:
    """EventBus over RabbitMQ. See the module docstring for the topology."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0, reconnect_max_delay: float = 5.0) -> None:
        self._url = url
        self._connect_timeout = connect_timeout
        self._max_delay = reconnect_max_delay
        self._publisher: _Publisher | None = None
        self._consumer_link: _Link | None = None
        self._subscriptions: list[RabbitSubscription] = []
        self._retry_queues: dict[str, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._publisher = _Publisher(self._url, self._max_delay)
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
        batch = _Batch(loop, future, len(envelopes))
        self._publisher.submit(
            [_Outgoing(e.type, e.SerializeToString(), _properties(e), batch) for e in envelopes]
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
        _check_group(group)
        if not patterns:
            raise ValueError("subscribe to at least one pattern")
        subscription = RabbitSubscription(self, group, patterns, handler, prefetch, max_attempts, retry_delay,
                                          ephemeral)
        self._subscriptions.append(subscription)
        self._retry_queues.setdefault(group, set()).update(
            retry_queue_name(group, d) for d in subscription.delays)
        if self._consumer_link is None:
            self._consumer_link = _Link(self._url, "agora-bus-consumer", self._consumer_open,
                                        self._consumer_lost, self._max_delay)
            self._consumer_link.start()
        else:
            link = self._consumer_link
            link.call(lambda: link.is_open and subscription.open(link.connection))
        try:
            await asyncio.wait_for(asyncio.shield(subscription.ready), self._connect_timeout)
        except asyncio.TimeoutError:
            log.warning("group %s is not consuming yet (broker away?); it will when the broker answers", group)
        return subscription

    def _consumer_open(self, connection: pika.SelectConnection) -> None:
        for subscription in list(self._subscriptions):
            subscription.open(connection)

    def _consumer_lost(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.lost()

    def _forget(self, subscription: RabbitSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    async def _on_io_thread(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the consumer connection's thread and wait for it."""
        link = self._consumer_link
        if link is None:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def run() -> None:
            try:
                fn()
            finally:
                loop.call_soon_threadsafe(_resolve, done)

        link.call(run)
        await done

    # -- dead letters: rare, operator-driven, so a short-lived blocking connection in a worker thread

    async def dead_letters(self, group: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        return await asyncio.to_thread(self._sweep_dead_letters, group, None, "keep", limit)

    async def replay_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        return len(await asyncio.to_thread(self._sweep_dead_letters, group, ids, "replay", None))

    async def discard_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        return len(await asyncio.to_thread(self._sweep_dead_letters, group, ids, "discard", None))

    def _sweep_dead_letters(self, group: str | None, ids: Collection[str] | None, action: str,
                            limit: int | None) -> list[DeadLetter]:
        """Read the dead-letter queue once through; act on the chosen letters, leave the others.

        Letters are taken unacknowledged; closing the channel puts back every one not acted on,
        so listing never loses a message."""
        chosen: list[DeadLetter] = []
        connection = pika.BlockingConnection(pika.URLParameters(self._url))
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(DEAD_EXCHANGE, "topic", durable=True)
            declared = channel.queue_declare(DEAD_QUEUE, durable=True)
            channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE, "#")
            for _ in range(declared.method.message_count):
                method, properties, body = channel.basic_get(DEAD_QUEUE, auto_ack=False)
                if method is None:
                    break
                letter = _dead_letter(method.routing_key, properties, body)
                if (group is not None and letter.group != group) or (ids is not None and letter.id not in ids):
                    continue
                if action == "replay":
                    headers = {k: v for k, v in (properties.headers or {}).items()
                               if k not in (ATTEMPT, ERROR, "x-death", "x-first-death-exchange",
                                            "x-first-death-queue", "x-first-death-reason")}
                    properties.headers = headers or None
                    try:
                        # Straight to the group's queue (default exchange): the other groups had it already.
                        channel.basic_publish("", queue_name(letter.group), body, properties, mandatory=True)
                    except pika.exceptions.UnroutableError:
                        log.error("cannot replay %s: queue %s is gone", letter.id, queue_name(letter.group))
                        continue
                if action in ("replay", "discard"):
                    channel.basic_ack(method.delivery_tag)
                chosen.append(letter)
                if limit is not None and len(chosen) >= limit:
                    break
        finally:
            connection.close()
        return chosen

    async def delete_group(self, group: str) -> None:
        """Remove a consumer group's queues and dead letters (tests, decommissioned consumers)."""
        _check_group(group)
        await self.discard_dead_letters(group)
        # Retry queues this process declared, plus those of the default policy (other processes').
        retry = self._retry_queues.pop(group, set()) | {
            retry_queue_name(group, d) for d in retry_delays(DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_DELAY)}
        names = [queue_name(group), *sorted(retry)]

        def delete() -> None:
            connection = pika.BlockingConnection(pika.URLParameters(self._url))
            try:
                channel = connection.channel()
                for name in names:
                    channel.queue_delete(name)
            finally:
                connection.close()

        await asyncio.to_thread(delete)


def _dead_letter(routing_key: str, properties: BasicProperties, body: bytes) -> DeadLetter:
    headers = properties.headers or {}
    error = headers.get(ERROR)
    if isinstance(error, bytes):
        error = error.decode("utf-8", "replace")
    if error is None:  # rejected by the broker's dead-lettering, not by a handler
        deaths = headers.get("x-death") or [{}]
        error = f"rejected by the consumer ({deaths[0].get('reason', 'unknown')}): not an Envelope"
    try:
        envelope: Envelope | None = Envelope.FromString(body)
    except DecodeError:
        envelope = None
    return DeadLetter(
        id=(envelope.id if envelope is not None and envelope.id else properties.message_id) or "",
        group=routing_key,
        type=envelope.type if envelope is not None else (properties.type or ""),
        key=envelope.key if envelope is not None else "",
        attempts=int(headers.get(ATTEMPT, 1)),
        error=str(error),
        envelope=envelope,
    )

