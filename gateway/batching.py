"""Request batching: concurrent calls of a unary method that declares `(agora.api.v1.batching)`
become one call of its batch method, in the manner of Google's client-library request batching.

A batch is per (method, caller key) and is sent once it holds `max_count` calls or `max_bytes` of
serialized requests, or `max_delay_ms` after its first call. The caller key is every metadata entry
the upstream reads about the caller (Authorization, the cookie session, CSRF proof, X-Api-Key,
Grpc-Metadata-*), so a batch only ever holds one caller credential's calls and the batch call acts
with exactly that credential: no caller acts with another's identity. What identifies a request
and not its caller (x-request-id, the trace context) is left out of the key; so is the caller's
address, which the batch cannot vouch for on behalf of many callers: the batch call carries none
(only identity limits by address, and its methods are not batched), and the first call's trace
context, so the batch is a span of one of its callers' traces.

Each call gets its own answer: its result's `response` (the unary method's response), or its
result's `google.rpc.Status` raised as the grpc.aio.AioRpcError a unary call would have raised, so
the bridge renders it exactly as it renders that call's own error (profiles included). A batch call
that fails as a whole gives every call its status. A caller's deadline or disconnect ends only its
own wait: the batch goes on for the others (a vote already sent may still count, as with a unary
call that timed out). Pending calls are bounded (`max_pending` per method): beyond it a call is
answered RESOURCE_EXHAUSTED at once.

Written here rather than taken from a library: grpc has no client-side batching for Python, and
google-api-core's batching is tied to its generated clients' gapic layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from agora.api.v1 import options_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gateway import telemetry
from gateway.descriptors import DescriptorSet
from gateway.errors import STATUS_DETAILS_KEY, BridgeError
from gateway.routes import Binding
from gateway.upstreams import Upstreams

log = logging.getLogger("agora.gateway.batching")

# Metadata that names the request, not the caller: not part of the batch key.
_PER_REQUEST = frozenset({"x-request-id", "traceparent", "tracestate"})
_TRACE = ("traceparent", "tracestate")
# The caller's address (plain and vouched): a batch of many callers carries none.
_ADDRESS = frozenset({"x-forwarded-for", "agora-edge-address"})
DEFAULT_MAX_COUNT, DEFAULT_MAX_BYTES, DEFAULT_MAX_DELAY_MS = 100, 256 * 1024, 5


@dataclass(frozen=True)
class BatchPlan:
    """A batched method's option, resolved against the descriptor pool."""

    method: str  # the unary method's full name
    batch_path: str  # "/pkg.Service/BatchMethod"
    service: str
    request_class: type[Message]  # the batch method's request
    response_class: type[Message]
    requests_field: str
    results_field: str
    max_count: int
    max_bytes: int
    max_delay: float  # seconds


def batching_options(descriptor_set: bytes) -> dict[str, options_pb2.Batching]:
    """(agora.api.v1.batching) per unary method full name, read from the raw descriptor set (as
    descriptors.py reads the other method options)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    found: dict[str, options_pb2.Batching] = {}
    for file_proto in fds.file:
        prefix = f"{file_proto.package}." if file_proto.package else ""
        for service_proto in file_proto.service:
            for method_proto in service_proto.method:
                if method_proto.options.HasExtension(options_pb2.batching):
                    option = options_pb2.Batching()
                    option.CopyFrom(method_proto.options.Extensions[options_pb2.batching])
                    found[f"{prefix}{service_proto.name}.{method_proto.name}"] = option
    return found


def plan(ds: DescriptorSet, method: str, option: options_pb2.Batching) -> BatchPlan:
    """The plan for `method`; ValueError when the option names a method or fields that do not fit."""
    single = ds.pool.FindMethodByName(method)
    batch = ds.pool.FindMethodByName(option.method)
    if batch.containing_service.full_name != single.containing_service.full_name:
        raise ValueError(f"{method}: batch method {option.method} is not in the same service")
    requests = batch.input_type.fields_by_name.get(option.requests_field)
    results = batch.output_type.fields_by_name.get(option.results_field)
    if requests is None or not requests.is_repeated or requests.message_type is not single.input_type:
        raise ValueError(
            f"{option.method}: no repeated {single.input_type.full_name} {option.requests_field}")
    if results is None or not results.is_repeated or results.message_type is None:
        raise ValueError(f"{option.method}: no repeated message field {option.results_field}")
    result_fields = results.message_type.fields_by_name
    if "status" not in result_fields or "response" not in result_fields:
        raise ValueError(f"{option.method}: a result needs `status` and `response` fields")
    return BatchPlan(
        method=method, batch_path=f"/{batch.containing_service.full_name}/{batch.name}",
        service=batch.containing_service.full_name,
        request_class=ds.message_class(batch.input_type), response_class=ds.message_class(batch.output_type),
        requests_field=option.requests_field, results_field=option.results_field,
        max_count=option.max_count or DEFAULT_MAX_COUNT, max_bytes=option.max_bytes or DEFAULT_MAX_BYTES,
        max_delay=(option.max_delay_ms or DEFAULT_MAX_DELAY_MS) / 1000.0)


_STATUS_CODES = {c.value[0]: c for c in grpc.StatusCode}


def rpc_error(code: int, message: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(_STATUS_CODES.get(code, grpc.StatusCode.UNKNOWN), grpc.aio.Metadata(),
                                grpc.aio.Metadata(), message)


def status_error(status: status_pb2.Status) -> grpc.aio.AioRpcError:
    """A result's status as the error a unary call with that outcome raises (the kit sends every
    refusal's google.rpc.Status in grpc-status-details-bin; so does this)."""
    return grpc.aio.AioRpcError(_STATUS_CODES.get(status.code, grpc.StatusCode.UNKNOWN), grpc.aio.Metadata(),
                                grpc.aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString())),
                                status.message)


def _copy(err: grpc.aio.AioRpcError) -> grpc.aio.AioRpcError:
    """A fresh error per caller (one exception object raised in many tasks would share its traceback)."""
    return grpc.aio.AioRpcError(err.code(), err.initial_metadata(), err.trailing_metadata(), err.details(),
                                err.debug_error_string())


@dataclass
class _Waiting:
    request: Message
    future: asyncio.Future
    timeout: float | None


@dataclass
class _Batch:
    key: tuple
    metadata: list[tuple[str, Any]]
    calls: list[_Waiting] = field(default_factory=list)
    size: int = 0
    timer: asyncio.TimerHandle | None = None


class BatchedCall:
    """What transcode.py awaits in place of a unary call: the response, or the call's error. A
    batched call has no response metadata of its own (the batch call's is not one caller's)."""

    def __init__(self, future: asyncio.Future, timeout: float | None) -> None:
        self._future, self._timeout = future, timeout

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self) -> Message:
        try:
            # Shielded: this caller giving up (deadline, disconnect) leaves the batch to the others.
            return await asyncio.wait_for(asyncio.shield(self._future), self._timeout)
        except asyncio.TimeoutError:
            raise rpc_error(code_pb2.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

    async def initial_metadata(self) -> tuple:
        return ()

    async def trailing_metadata(self) -> tuple:
        return ()


class RequestBatcher:
    """One batched method's open batches (one per caller key) and the batch calls in flight."""

    def __init__(self, plan: BatchPlan, send: Any, *, max_pending: int = 10_000) -> None:
        self.plan, self._send, self.max_pending = plan, send, max_pending
        self._open: dict[tuple, _Batch] = {}
        self._pending = 0  # calls queued or in flight
        self._tasks: set[asyncio.Task] = set()
        self._sizes = telemetry.batch_size.labels(plan.batch_path.lstrip("/").replace("/", "."))
        self.batches = 0

    def call(self, request: Message, metadata: Iterable[tuple[str, Any]],
             timeout: float | None) -> BatchedCall:
        if self._pending >= self.max_pending:
            raise BridgeError(code_pb2.RESOURCE_EXHAUSTED,
                              f"{self.max_pending} calls of {self.plan.method} are already waiting for "
                              "their batch; retry shortly")
        entries = list(metadata)
        key = tuple(e for e in entries if e[0] not in _PER_REQUEST and e[0] not in _ADDRESS)
        batch = self._open.get(key)
        size = request.ByteSize()
        if batch is not None and batch.calls and batch.size + size > self.plan.max_bytes:
            self._flush(batch)
            batch = None
        if batch is None:
            trace = [e for e in entries if e[0] in _TRACE]
            batch = self._open[key] = _Batch(key, [*key, *trace])
            batch.timer = asyncio.get_running_loop().call_later(self.plan.max_delay, self._flush, batch)
        waiting = _Waiting(request, asyncio.get_running_loop().create_future(), timeout)
        batch.calls.append(waiting)
        batch.size += size
        self._pending += 1
        if len(batch.calls) >= self.plan.max_count or batch.size >= self.plan.max_bytes:
            self._flush(batch)
        return BatchedCall(waiting.future, timeout)

    def _flush(self, batch: _Batch) -> None:
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if not batch.calls:
            return
        task = asyncio.get_running_loop().create_task(self._call(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: _Batch) -> None:
        calls = batch.calls
        try:
            request = self.plan.request_class()
            getattr(request, self.plan.requests_field).extend(c.request for c in calls)
            timeouts = [c.timeout for c in calls]
            timeout = None if None in timeouts else max(t for t in timeouts if t is not None)
            self.batches += 1
            self._sizes.observe(len(calls))
            try:
                response = await self._send(request, metadata=batch.metadata, timeout=timeout)
            except grpc.aio.AioRpcError as err:
                for c in calls:
                    _settle(c.future, error=_copy(err))
                return
            except BridgeError as err:
                for c in calls:
                    _settle(c.future, error=BridgeError(err.code, err.message, http=err.http,
                                                        headers=err.headers, details=err.details))
                return
            results = getattr(response, self.plan.results_field)
            if len(results) != len(calls):
                log.error("%s answered %d results for %d requests", self.plan.batch_path, len(results),
                          len(calls))
                for c in calls:
                    _settle(c.future,
                            error=rpc_error(code_pb2.INTERNAL, "the batch's answer did not match it"))
                return
            for c, result in zip(calls, results):
                if result.status.code == code_pb2.OK:
                    _settle(c.future, result=result.response)
                else:
                    _settle(c.future, error=status_error(result.status))
        except Exception as exc:  # noqa: BLE001 - a bug of ours: every caller learns, none hangs
            log.exception("batch call of %s failed", self.plan.batch_path)
            for c in calls:
                _settle(c.future, error=exc)
        finally:
            self._pending -= len(calls)

    async def close(self) -> None:
        for batch in list(self._open.values()):
            self._flush(batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
        future.exception()  # retrieved: a caller that left must not log "exception never retrieved"
    else:
        future.set_result(result)


class Batchers:
    """The bridge's batchers, one per batched method among the served bindings."""

    def __init__(self, batchers: Mapping[str, RequestBatcher]) -> None:
        self._by_method = dict(batchers)

    def get(self, binding: Binding) -> RequestBatcher | None:
        return self._by_method.get(binding.method.full_name) if self._by_method else None

    def __len__(self) -> int:
        return len(self._by_method)

    async def close(self) -> None:
        for batcher in self._by_method.values():
            await batcher.close()


def add_status_details(pool: Any) -> None:
    """Put google/rpc/error_details.proto (and what it imports) into the bridge's pool when the
    descriptor set lacks it: a batch response carries each item's google.rpc.Status, whose details
    (BadRequest, ResourceInfo, ErrorInfo, ...) the codec renders as JSON Any by their type names."""
    def add(file: Any) -> None:
        try:
            pool.FindFileByName(file.name)
            return
        except KeyError:
            pass
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        pool.Add(proto)

    add(error_details_pb2.DESCRIPTOR)


def build_batchers(descriptor_set: bytes, ds: DescriptorSet, bindings: Sequence[Binding],
                   upstreams: Upstreams, *, max_pending: int = 10_000) -> Batchers:
    """A batcher for every served unary method that declares (agora.api.v1.batching)."""
    options = batching_options(descriptor_set)
    if options:
        add_status_details(ds.pool)
    served = {b.method.full_name for b in bindings if not b.client_streaming and not b.server_streaming}
    made: dict[str, RequestBatcher] = {}
    for method, option in options.items():
        if method not in served:
            continue
        p = plan(ds, method, option)
        target = upstreams.target(p.service)
        if target is None:
            continue
        send = upstreams.channel(target).unary_unary(
            p.batch_path, request_serializer=p.request_class.SerializeToString,
            response_deserializer=p.response_class.FromString)
        made[method] = RequestBatcher(p, send, max_pending=max_pending)
    return Batchers(made)
