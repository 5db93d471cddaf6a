"""One AMQP connection on a thread of its own (pika SelectConnection), reopened with back-off when it drops.

Everything touching the connection runs on that thread; other threads hand work over with
`call`, which the I/O loop runs in order, or `run`, which an asyncio task awaits.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pika
from pika.adapters.select_connection import IOLoop

log = logging.getLogger("agora.bus")

Step = Callable[[Callable], Any]  # a pika operation that takes the callback to run when it is done


def resolve(future: asyncio.Future) -> None:
    """Complete `future` with None unless it is done already (for call_soon_threadsafe)."""
    if not future.done():
        future.set_result(None)


def chain(steps: list[Step], done: Callable[[], None]) -> None:
    """Run pika's callback-style operations one after another, then `done`."""
    pending = deque(steps)

    def advance(_frame: Any = None) -> None:
        if pending:
            pending.popleft()(advance)
        else:
            done()

    advance()


class Link:
    """One AMQP connection and the thread that drives it.

    `on_open(connection)` runs on that thread each time the connection opens, `on_lost()` each
    time it closes. Once `close()` has returned the link is closed for good: `call` and `run`
    do nothing."""

    def __init__(self, url: str, name: str, on_open: Callable[[pika.SelectConnection], None],
                 on_lost: Callable[[], None], max_delay: float) -> None:
        self._parameters = pika.URLParameters(url)
        self._on_open, self._on_lost = on_open, on_lost
        self._max_delay = max_delay
        self._delay = 0.1
        self._closing = False
        self._closed = False
        self.connection: pika.SelectConnection | None = None
        self._ioloop = IOLoop()
        self._thread = threading.Thread(target=self._ioloop.start, name=name, daemon=True)

    @property
    def is_open(self) -> bool:
        return self.connection is not None and self.connection.is_open

    def start(self) -> None:
        self._thread.start()
        self.call(self._connect)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the I/O thread, after the calls handed over before it."""
        if not self._closed:
            self._ioloop.add_callback_threadsafe(fn)

    def call_later(self, delay: float, fn: Callable[[], Any]) -> None:
        """On the I/O thread only: run `fn` there in `delay` seconds."""
        self._ioloop.call_later(delay, fn)

    async def run(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the I/O thread and wait for it."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def run() -> None:
            try:
                fn()
            finally:
                loop.call_soon_threadsafe(resolve, done)

        self.call(run)
        await done

    def close(self, timeout: float = 5.0) -> None:
        """Blocking: close the connection and stop the thread."""
        self.call(self._shutdown)
        self._thread.join(timeout)
        self._closed = True

    def _connect(self) -> None:
        if self._closing:
            return
        self.connection = pika.SelectConnection(
            self._parameters,
            on_open_callback=self._opened,
            on_open_error_callback=self._open_failed,
            on_close_callback=self._lost,
            custom_ioloop=self._ioloop,
        )

    def _opened(self, connection: pika.SelectConnection) -> None:
        log.info("amqp connection %s open", self._thread.name)
        self._delay = 0.1
        self._on_open(connection)

    def _open_failed(self, connection: pika.SelectConnection, error: BaseException) -> None:
        self.connection = None
        self._retry(error)

    def _lost(self, connection: pika.SelectConnection, reason: BaseException) -> None:
        self.connection = None
        self._on_lost()
        if self._closing:
            self._ioloop.stop()
        else:
            log.warning("amqp connection %s lost: %s", self._thread.name, reason)
            self._retry(reason)

    def _retry(self, reason: BaseException) -> None:
        if self._closing:
            self._ioloop.stop()
            return
        # Jitter keeps a fleet of replicas from knocking on a restarted broker in lockstep.
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._delay * 2, self._max_delay)
        log.debug("amqp %s reconnecting in %.2fs (%s)", self._thread.name, delay, reason)
        self._ioloop.call_later(delay, self._connect)

    def _shutdown(self) -> None:
        self._closing = True
        if self.connection is not None and not (self.connection.is_closing or self.connection.is_closed):
            self.connection.close()
        elif self.connection is None or self.connection.is_closed:
            self._ioloop.stop()
