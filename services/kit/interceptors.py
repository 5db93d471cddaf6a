"""Server interceptors every service gets: request ids and access logs, error mapping, deadlines,
metrics and a server span per call; the client interceptor every channel between services gets.

They live together here so no servicer repeats them. grpc.aio interceptors see only the
handler, so each one wraps the handler's behaviour for all four call shapes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.rpc import status_pb2
from grpc_status import rpc_status

from services.kit import auth, errors, validation
from services.kit.logs import request_id
from services.kit.revocation import ENDED as SESSION_ENDED
from services.kit.revocation import Drain, OpenStreams
from services.kit.telemetry import metrics, tracing

log = logging.getLogger("agora.rpc")

# Absolute monotonic time by which the current call must finish (None: the caller set none).
deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("deadline", default=None)


def remaining(default: float | None = None) -> float | None:
    """Seconds left on the caller's deadline, for calls this handler makes downstream."""
    at = deadline.get()
    if at is None:
        return default
    left = at - time.monotonic()
    return max(left, 0.0) if default is None else max(min(left, default), 0.0)


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str:
    for k, v in context.invocation_metadata() or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


async def _abort_with(context: grpc.aio.ServicerContext, status) -> None:
    rich = rpc_status.to_status(status)
    await context.abort(rich.code, rich.details, rich.trailing_metadata)


def _reset(var: contextvars.ContextVar, token: contextvars.Token) -> None:
    # A stream handler abandoned by its client is finalised by the garbage collector in
    # another context; there is nothing to restore there.
    try:
        var.reset(token)
    except ValueError:
        pass


# Codes that are the caller's doing, not a server failure: not marked as span errors.
_CALLER_CODES = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.CANCELLED, grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})


class _Call:
    """What every shape of call does around the handler: context, span, log line, metrics, error mapping."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.context = context
        self.started = time.monotonic()
        # 64 random bits name a call in the logs; ids need not be secret, so no syscall per call
        self.rid = _metadata(context, "x-request-id") or f"{random.getrandbits(64):016x}"
        left = context.time_remaining()
        self.tokens = (
            request_id.set(self.rid),
            deadline.set(None if left is None else self.started + left),
        )
        self.span = self.span_token = None
        if tracing.enabled():
            self._start_span()

    def _start_span(self) -> None:
        service, name = metrics.split_method(self.method)
        parent = tracing.extract_pairs(self.context.invocation_metadata())
        self.span = tracing.start(self.method.lstrip("/"), tracing.SpanKind.SERVER, parent, {
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": name, "agora.request_id": self.rid,
        })
        self.span_token = tracing.activate(self.span)

    def finish(self, code: grpc.StatusCode) -> None:
        elapsed = time.monotonic() - self.started
        level = (logging.WARNING if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
                 else logging.INFO)
        log.log(level, "rpc", extra={"method": self.method, "code": code.name,
                                     "ms": round(elapsed * 1000, 2)})
        metrics.rpc_duration(*metrics.split_method(self.method), code.name).observe(elapsed)
        if self.span is not None:
            tracing.deactivate(self.span_token)
            failed = code not in _CALLER_CODES
            tracing.end(self.span, code.name if failed else None, **{"rpc.grpc.status_code": code.value[0]})
        _reset(request_id, self.tokens[0])
        _reset(deadline, self.tokens[1])

    async def fail(self, exc: BaseException) -> grpc.StatusCode:
        """Turn an exception into the status the caller sees; returns the code for the log."""
        if isinstance(exc, grpc.aio.AbortError):
            raise exc  # the handler already chose a status
        if isinstance(exc, errors.DomainError):
            await _abort_with(self.context, exc.to_status())
        outage = errors.outage_status(exc, self.rid)
        if outage is not None:
            log.warning("database unavailable in %s: %s", self.method, type(exc).__name__)
            await _abort_with(self.context, outage)
        log.error("unhandled exception in %s", self.method, exc_info=exc)
        await _abort_with(self.context, errors.internal_status(self.rid))
        raise AssertionError("unreachable")  # abort() always raises


def _code_for(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, errors.DomainError):
        return exc.code
    return grpc.StatusCode.UNAVAILABLE if isinstance(exc, errors.DRIVER_OUTAGES) else grpc.StatusCode.INTERNAL


def _code_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return errors._BY_NUMBER.get(code or 0, grpc.StatusCode.OK)


class Malformed:
    """What a request that does not parse becomes, so the call answers INVALID_ARGUMENT (grpc
    itself would answer UNKNOWN and log a traceback)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserializer):
    if deserializer is None:
        return None

    def parse(raw: bytes):
        try:
            return deserializer(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's bad bytes
            return Malformed(exc)

    return parse


def _checked(method: str, request_or_iterator):
    """The request, or an iterator of requests, refusing any that did not parse."""
    def refuse(_: Malformed):
        return errors.InvalidArgument(f"the request is not a valid protobuf message for {method}")

    if isinstance(request_or_iterator, Malformed):
        raise refuse(request_or_iterator)
    if not hasattr(request_or_iterator, "__aiter__"):
        return validation.check(request_or_iterator)

    async def requests():
        async for item in request_or_iterator:
            if isinstance(item, Malformed):
                raise refuse(item)
            yield item  # a client stream's frames are the domain's to refuse in-band (a `rejected` reply)

    return requests()


# The method's declared (agora.api.v1.access), as the numbers of the Access enum.
PUBLIC, USER, OWNER, INTERNAL = 1, 2, 3, 4
NOT_DECLARED = None  # a method of a service the descriptor pool does not know (test probes): no check


def access_of(method: str) -> int | None:
    """The access class of `/pkg.Service/Method` from the default descriptor pool (where the
    generated stubs the servicer imports registered it): unset is INTERNAL, closed by default.
    None when the pool has no such service (probe services of the kit's own tests)."""
    from agora.api.v1 import options_pb2
    from google.protobuf import descriptor_pool

    service, _, name = method.lstrip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service)
    except KeyError:
        return NOT_DECLARED
    descriptor = found.methods_by_name.get(name)
    if descriptor is None:
        return INTERNAL
    return descriptor.GetOptions().Extensions[options_pb2.access] or INTERNAL


def access_table(*services: str) -> dict[str, int]:
    """`/pkg.Service/Method` -> access class for every method of `services` the default pool knows:
    read once when a server starts, consulted on every call."""
    from google.protobuf import descriptor_pool

    table: dict[str, int] = {}
    for name in services:
        try:
            found = descriptor_pool.Default().FindServiceByName(name)
        except KeyError:
            continue  # not a generated service (the kit's test probes): its methods are not checked
        for method in found.methods:
            path = f"/{name}/{method.name}"
            table[path] = access_of(path)
    return table


def _authorize(access: int | None, context) -> None:
    """The declared access class, checked once the caller is known (before validation and the
    handler). OWNER passes a signed-in or internal caller; the domain then checks the resource."""
    if access is NOT_DECLARED or access == PUBLIC:
        return
    if access == USER:
        auth.require_user()
    elif access == OWNER:
        auth.owner_or_internal(context)
    else:
        auth.internal_only(context)


def _wrap_unary(method: str, behaviour: Callable[..., Awaitable[Any]], sessions: auth.SessionResolver | None,
                service_key: str = "", access: int | None = INTERNAL):
    async def handler(request_or_iterator, context):
        call = _Call(method, context)
        code = grpc.StatusCode.OK
        signed_in = None
        keyed = auth.use_service_key(service_key)
        try:
            signed_in = await auth.authenticate(context.invocation_metadata(), sessions)
            _authorize(access, context)
            request_or_iterator = _checked(method, request_or_iterator)
            result = await behaviour(request_or_iterator, context)
            code = _code_of(context)
            return result
        except grpc.aio.AbortError:
            code = _code_of(context)
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001 - mapping every failure is this function's job
            code = _code_for(exc)
            await call.fail(exc)
        finally:
            auth.reset(signed_in)
            auth.reset(keyed)
            call.finish(code)

    return handler


def _wrap_stream(method: str, behaviour: Callable[..., Any], stopping: asyncio.Event,
                 sessions: auth.SessionResolver | None, service_key: str = "", access: int | None = INTERNAL,
                 streams: OpenStreams | None = None):
    async def handler(request_or_iterator, context):
        call = _Call(method, context)
        code = grpc.StatusCode.OK
        signed_in = None
        keyed = auth.use_service_key(service_key)
        # On shutdown a live stream ends with UNAVAILABLE (retryable) instead of being cut, and on
        # sign-out with UNAUTHENTICATED: the watcher (or the revocation listener, through
        # `streams`) cancels the handler, and the cancellation becomes that status.
        # A client stream is drained on sign-out (revocation.Drain): the frame in hand finishes and
        # its results are sent before the stream ends.
        me = asyncio.current_task()
        ended_by = ""
        drain = Drain() if hasattr(request_or_iterator, "__aiter__") else None
        draining: asyncio.Future | None = None

        def end(why: str) -> None:
            nonlocal ended_by
            if me is not None and not ended_by and not me.done():
                ended_by = why
                me.cancel()

        def sign_out() -> None:
            nonlocal draining
            if drain is None:
                end("signed out")
            elif draining is None:
                drain.shut()
                draining = asyncio.ensure_future(drain.settled())
                draining.add_done_callback(lambda done: done.cancelled() or end("signed out"))

        def on_stop(waiter: asyncio.Future) -> None:
            if not waiter.cancelled():
                end("shutdown")

        watcher = asyncio.ensure_future(stopping.wait())
        watcher.add_done_callback(on_stop)
        untrack = None
        active = metrics.rpc_streams(*metrics.split_method(method))
        active.inc()
        try:
            signed_in = await auth.authenticate(context.invocation_metadata(), sessions)
            _authorize(access, context)
            request_or_iterator = _checked(method, request_or_iterator)
            if drain is not None:
                request_or_iterator = drain.gate(request_or_iterator)
            who = auth.caller()
            if streams is not None and who is not None:
                untrack = streams.track(who, sign_out)
            async for response in behaviour(request_or_iterator, context):
                if drain is not None:
                    drain.sent()
                yield response
            code = _code_of(context)
        except grpc.aio.AbortError:
            code = _code_of(context)
            raise
        except asyncio.CancelledError:
            if ended_by == "shutdown":
                code = grpc.StatusCode.UNAVAILABLE
                await _abort_with(context, status_pb2.Status(
                    code=code.value[0],
                    message="server is shutting down; reconnect (with resume_from, where offered)"))
            if ended_by == "signed out":
                code = grpc.StatusCode.UNAUTHENTICATED
                await _abort_with(context, status_pb2.Status(code=code.value[0], message=SESSION_ENDED))
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as exc:  # noqa: BLE001
            code = _code_for(exc)
            await call.fail(exc)
        finally:
            if untrack is not None:
                untrack()
            if draining is not None:
                draining.cancel()
            watcher.cancel()
            active.dec()
            auth.reset(signed_in)
            auth.reset(keyed)
            call.finish(code)

    return handler


class ServiceInterceptor(grpc.aio.ServerInterceptor):
    """Request ids, access log, error mapping, the caller's deadline and identity, and each method's
    declared access class (PUBLIC / USER / OWNER / INTERNAL), enforced here and nowhere else; INTERNAL
    needs the service credential internal calls send (`service_key`, from Settings; '' = nobody is
    internal)."""

    def __init__(self, stopping: asyncio.Event, sessions: auth.SessionResolver | None = None,
                 service_key: str = "", access: dict[str, int] | None = None, *,
                 streams: OpenStreams | None = None) -> None:
        self.stopping = stopping
        # method -> access class; None: read each method's (agora.api.v1.access) from the pool
        self.access = access
        self.streams = streams
        self.sessions = sessions
        self.service_key = service_key
        # method -> (the registered handler, its wrapped twin): wrapped once, not on every call
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method.startswith(("/grpc.health.v1.", "/grpc.reflection.")):
            return handler  # infrastructure: no access log per health probe
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        access = self.access[method] if self.access and method in self.access else access_of(method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, self.sessions, self.service_key, access),
                _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(method, handler.stream_unary, self.sessions, self.service_key, access),
                _tolerant(handler.request_deserializer), handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(method, handler.unary_stream, self.stopping, self.sessions, self.service_key,
                             access, self.streams), _tolerant(handler.request_deserializer),
                handler.response_serializer
            )
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream(method, handler.stream_stream, self.stopping, self.sessions, self.service_key,
                         access, self.streams), _tolerant(handler.request_deserializer),
            handler.response_serializer
        )


class DeadlinePropagation(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    """Client side: a downstream call never outlives the call that caused it, carries its request id
    and the service API key (when one is configured), and, while tracing is on, is a CLIENT span
    whose context travels as `traceparent` metadata."""

    def __init__(self, api_key: str = "") -> None:
        self.api_key = api_key

    def _details(self, details, span=None):
        left = remaining()
        rid = request_id.get()
        if left is None and not rid and span is None and not self.api_key:
            return details
        timeout = (details.timeout if left is None
                   else left if details.timeout is None else min(details.timeout, left))
        metadata = list(details.metadata or [])
        if rid and not any(k == "x-request-id" for k, _ in metadata):
            metadata.append(("x-request-id", rid))
        if self.api_key and not any(k == "x-api-key" for k, _ in metadata):
            metadata.append(("x-api-key", self.api_key))  # service-to-service calls are internal calls
        if span is not None:
            metadata.extend(tracing.inject(span).items())
        return grpc.aio.ClientCallDetails(
            details.method, timeout, metadata, details.credentials, details.wait_for_ready
        )

    async def _traced(self, continuation, details, request):
        method = details.method if isinstance(details.method, str) else details.method.decode()
        service, name = metrics.split_method(method)
        span = tracing.start(method.lstrip("/"), tracing.SpanKind.CLIENT, None,
                             {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name})
        try:
            call = await continuation(self._details(details, span), request)
        except BaseException as exc:
            tracing.end(span, type(exc).__name__)
            raise
        call.add_done_callback(lambda done: asyncio.ensure_future(_end_client_span(span, done)))
        return call

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        if tracing.enabled():
            return await self._traced(continuation, client_call_details, request)
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation, client_call_details, request):
        if tracing.enabled():
            return await self._traced(continuation, client_call_details, request)
        return await continuation(self._details(client_call_details), request)


async def _end_client_span(span, call) -> None:
    try:
        code = await call.code()
    except Exception:  # noqa: BLE001 - a call that ended without a status
        code = grpc.StatusCode.UNKNOWN
    failed = code not in _CALLER_CODES
    tracing.end(span, code.name if failed else None, **{"rpc.grpc.status_code": code.value[0]})
