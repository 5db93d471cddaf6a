"""Streams that survive a dropped connection: reconnect with back-off, resume after the last sequence.

Log-style streams (bids, order status, audit, chat) take `resume_from`: after a reconnect the
server replays what was missed, and anything at or below the last delivered sequence is
dropped here, so every message reaches the caller exactly once. Snapshot streams (poll
results) have no `resume_from`: re-subscribing yields the current snapshot, which is all a
snapshot stream promises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any, TypeVar

import grpc

from agora.client.errors import AgoraError

R = TypeVar("R")

# Codes after which a watch is worth reopening: the server went away or shed a slow reader.
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})

OnRetry = Callable[[AgoraError, int, float], Any]


class _Resumption:
    """The bookkeeping shared by the sync and async loops."""

    def __init__(self, request: Any, reconnect_for: float) -> None:
        self.request = request
        self.reconnect_for = reconnect_for
        self.resumable = "resume_from" in request.DESCRIPTOR.fields_by_name
        self.last: int | None = None
        self.failing_since: float | None = None
        self.attempt = 0

    def next_request(self) -> Any:
        if not self.resumable or self.last is None:
            return self.request
        again = type(self.request)()
        again.CopyFrom(self.request)
        again.resume_from = max(self.last, self.request.resume_from)
        return again

    def fresh(self, message: Any) -> bool:
        """True when `message` was not delivered before (and remember it)."""
        sequence = getattr(message, "sequence", None)
        if self.resumable and sequence is not None:
            if self.last is not None and sequence <= self.last:
                return False
            self.last = sequence
        self.failing_since, self.attempt = None, 0
        return True

    def delay_after(self, error: AgoraError) -> float:
        """Seconds to wait before reconnecting, or raise `error` when it is not worth it."""
        if error.code not in RESUMABLE:
            raise error
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.reconnect_for:
            raise error
        self.attempt += 1
        return float(min(0.1 * 2 ** (self.attempt - 1), 2.0))


def resume(method: Callable[..., Iterable[R]], request: Any, *, reconnect_for: float = 60.0,
           on_retry: OnRetry | None = None) -> Iterator[R]:
    """Iterate `method(request)` across reconnects; ends when the server ends the stream with OK.

    `method` is a server-streaming method of `agora.client.Agora` (errors arrive as AgoraError).
    Gives up after `reconnect_for` seconds without a successful message, re-raising the error.
    `on_retry(error, attempt, delay)` is called before each reconnect."""
    state = _Resumption(request, reconnect_for)
    while True:
        stream = method(state.next_request())
        try:
            for message in stream:
                if state.fresh(message):
                    yield message
            return
        except AgoraError as error:
            delay = state.delay_after(error)
            if on_retry is not None:
                on_retry(error, state.attempt, delay)
            time.sleep(delay)
        finally:
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()


async def aresume(method: Callable[..., AsyncIterable[R]], request: Any, *, reconnect_for: float = 60.0,
                  on_retry: OnRetry | None = None) -> AsyncIterator[R]:
    """`resume` for `agora.client.aio.Agora`: an async iterator across reconnects."""
    state = _Resumption(request, reconnect_for)
    while True:
        stream = method(state.next_request())
        try:
            async for message in stream:
                if state.fresh(message):
                    yield message
            return
        except AgoraError as error:
            delay = state.delay_after(error)
            if on_retry is not None:
                result = on_retry(error, state.attempt, delay)
                if asyncio.iscoroutine(result):
                    await result
            await asyncio.sleep(delay)
        finally:
            cancel = getattr(stream, "cancel", None)
            if cancel is not None:
                cancel()
