"""Publishing to RabbitMQ with asynchronous confirms, many messages in flight on one connection.

After a reconnect, whatever the broker had not confirmed goes out again, in its original order:
a consumer may see an event twice and must be idempotent (services.kit.bus.stores).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import pika
from pika.spec import Basic, BasicProperties

from services.kit.bus import topology
from services.kit.bus.link import Link, chain, resolve
from services.kit.bus.port import EXCHANGE

log = logging.getLogger("agora.bus")


class Batch:
    """One publish() call: its future resolves when the broker has confirmed every message."""

    __slots__ = ("future", "left", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, left: int) -> None:
        self.loop, self.future, self.left = loop, future, left

    def confirmed(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.loop.call_soon_threadsafe(resolve, self.future)


@dataclass(slots=True)
class Outgoing:
    routing_key: str
    body: bytes
    properties: BasicProperties
    batch: Batch


class Publisher:
    """The publishing connection: `submit` from any thread, the rest runs on the link's thread."""

    def __init__(self, url: str, max_delay: float) -> None:
        self.link = Link(url, "agora-bus-publisher", self._connected, self._lost, max_delay)
        self._channel: Any = None
        self._tag = 0
        self._backlog: deque[Outgoing] = deque()
        self._unconfirmed: dict[int, Outgoing] = {}
        self.ready = threading.Event()

    # -- any thread
    def submit(self, items: list[Outgoing]) -> None:
        self.link.call(functools.partial(self._enqueue, items))

    # -- I/O thread
    def _enqueue(self, items: list[Outgoing]) -> None:
        self._backlog.extend(items)
        self._flush()

    def _connected(self, connection: pika.SelectConnection) -> None:
        connection.channel(on_open_callback=self._channel_open)

    def _channel_open(self, channel: Any) -> None:
        channel.add_on_close_callback(self._channel_closed)
        chain(
            [
                *topology.steps(channel, topology.EVENTS),
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
            self.link.call_later(0.5, lambda: self.link.is_open and self._connected(self.link.connection))

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
