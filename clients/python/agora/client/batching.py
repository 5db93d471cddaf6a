"""Client-side request batching: concurrent calls of a unary method that declares
`(agora.api.v1.batching)` become one call of its batch method, with the thresholds the option
declares (count, bytes, delay), as the bridge does (the same rules; no server code is imported).

    async with Agora("localhost") as agora:
        votes = agora.batched("polls", "CastVote")
        replies = await asyncio.gather(*(votes(CastVoteRequest(poll_id=p, option=i % 3)) for i in range(500)))

Each caller awaits its own result: the unary method's response, or the AgoraError its result's
status is. A batch call that fails as a whole raises its error in every caller. A batch holds the
calls of one metadata (this client's token plus what the caller passes), so it acts with exactly
those credentials. Each request gets its idempotency key first (request_id), so a batch retried
after a failure that left its outcome unknown counts nothing twice. A caller that stops waiting
(cancelled, timed out) leaves the batch to the others; pending calls are bounded (`max_pending`):
beyond it a call raises RESOURCE_EXHAUSTED at once.

Written here rather than taken from a library: grpc has no client batching for Python, and
google-api-core's batching is bound to its generated gapic clients.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message

from agora.api.v1 import options_pb2
from agora.client.calls import CallDefaults, with_idempotency_key
from agora.client.errors import AgoraError

DEFAULT_MAX_COUNT, DEFAULT_MAX_BYTES, DEFAULT_MAX_DELAY_MS = 100, 256 * 1024, 5


def batching_option(method: MethodDescriptor) -> options_pb2.Batching | None:
    """The method's (agora.api.v1.batching), or None when it declares none."""
    options = method.GetOptions()
    if not options.HasExtension(options_pb2.batching):
        return None
    return options.Extensions[options_pb2.batching]


@dataclass
class _Batch:
    key: tuple[tuple[str, str], ...]
    calls: list[tuple[Message, asyncio.Future[Any], float | None]] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class RequestBatcher:
    """Batches calls of one unary method into calls of its batch method (`send`: the batch
    method's grpc.aio multi-callable)."""

    def __init__(self, method: MethodDescriptor, batch_class: type[Message], send: Any,
                 defaults: CallDefaults, *, key_field: str | None = None, max_pending: int = 10_000) -> None:
        option = batching_option(method)
        if option is None:
            raise ValueError(f"{method.full_name} declares no (agora.api.v1.batching)")
        self.method, self._batch_class, self._send, self._defaults = method, batch_class, send, defaults
        self.requests_field, self.results_field = option.requests_field, option.results_field
        self.max_count = option.max_count or DEFAULT_MAX_COUNT
        self.max_bytes = option.max_bytes or DEFAULT_MAX_BYTES
        self.max_delay = (option.max_delay_ms or DEFAULT_MAX_DELAY_MS) / 1000.0
        self.key_field, self.max_pending = key_field, max_pending
        self._open: dict[tuple[tuple[str, str], ...], _Batch] = {}
        self._pending = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batch calls made

    async def __call__(self, request: Message, timeout: float | None = None, metadata: Any = None) -> Any:
        if self._pending >= self.max_pending:
            raise AgoraError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{self.max_pending} calls of {self.method.name} already wait for their batch")
        request = with_idempotency_key(request, self.key_field)
        timeout = timeout if timeout is not None else self._defaults.timeout
        key = tuple(self._defaults.metadata(metadata))
        batch = self._open.get(key)
        size = request.ByteSize()
        if batch is not None and batch.calls and batch.size + size > self.max_bytes:
            self._flush(batch)
            batch = None
        loop = asyncio.get_running_loop()
        if batch is None:
            batch = self._open[key] = _Batch(key)
            batch.timer = loop.call_later(self.max_delay, self._flush, batch)
        future = loop.create_future()
        batch.calls.append((request, future, timeout))
        batch.size += size
        self._pending += 1
        if len(batch.calls) >= self.max_count or batch.size >= self.max_bytes:
            self._flush(batch)
        try:
            # Shielded: a caller that stops waiting does not take the batch down with it.
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            raise AgoraError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    def _flush(self, batch: _Batch) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if batch.calls:
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: _Batch) -> None:
        futures = [f for _, f, _ in batch.calls]
        try:
            request = self._batch_class()
            getattr(request, self.requests_field).extend(r for r, _, _ in batch.calls)
            timeouts = [t for _, _, t in batch.calls]
            timeout = None if None in timeouts else max(t for t in timeouts if t is not None)
            self.batches += 1
            try:
                response = await self._send(request, timeout=timeout, metadata=list(batch.key))
            except grpc.aio.AioRpcError as failed:
                _fail(futures, AgoraError.from_rpc_error, failed)
                return
            results = getattr(response, self.results_field)
            if len(results) != len(futures):
                _fail(futures, AgoraError, grpc.StatusCode.INTERNAL,
                      f"{len(results)} results for a batch of {len(futures)}")
                return
            for future, result in zip(futures, results):
                if future.done():
                    continue
                if result.status.code == 0:
                    future.set_result(result.response)
                else:
                    future.set_exception(AgoraError.from_status(result.status))
                    future.exception()  # retrieved, in case its caller has gone
        except Exception as broken:  # noqa: BLE001 - whatever broke, no caller is left waiting
            _fail(futures, lambda e: e, broken)
        finally:
            self._pending -= len(futures)

    async def close(self) -> None:
        """Send what is waiting and wait for the batches in flight."""
        for batch in list(self._open.values()):
            self._flush(batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(futures: Sequence[asyncio.Future[Any]], make: Any, *args: Any) -> None:
    """Every caller still waiting gets its own `make(*args)` error."""
    for future in futures:
        if not future.done():
            future.set_exception(make(*args))
            future.exception()
