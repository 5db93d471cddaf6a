"""The Prometheus instruments of every Agora process, on prometheus-client's default registry.

That registry also carries the process collector (CPU, memory, open files, start time) and the
GC and platform collectors, so /metrics shows the process too. Label values are bounded by the
code (services, methods, event types, consumer groups, store methods), never by data.

Hot paths look a labelled child up once per label tuple (`_Family`), not on every call.
Every Gauge says `multiprocess_mode=_LIVESUM` (the bridge's workers add up: gateway/workers.py).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

T = TypeVar("T")
C = TypeVar("C")

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Under several bridge processes on one port (gateway/workers.py, prometheus-client's multiprocess
# mode) a gauge is the sum over the live processes; without that mode the argument does nothing.
_LIVESUM = "livesum"
_LAG = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0)


class _Family:
    """A labelled metric with its children cached by label tuple."""

    __slots__ = ("metric", "_children")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.metric.labels(*labels)
        return child


# -- gRPC servers (services/kit/interceptors.py)
rpc_duration = _Family(Histogram(
    "agora_rpc_server_duration_seconds",
    "gRPC calls served, by service, method and status code (count: rate; sum/buckets: latency)",
    ["service", "method", "code"], buckets=_LATENCY))
rpc_streams = _Family(Gauge(
    "agora_rpc_server_streams_active", "Streaming calls open now", ["service", "method"],
    multiprocess_mode=_LIVESUM))

# -- live stream fan-out (services/kit/streams.py)
stream_subscribers = _Family(Gauge(
    "agora_stream_subscribers", "Subscribers of a live feed now", ["feed", "kind"],
    multiprocess_mode=_LIVESUM))
stream_overflows = _Family(Counter(
    "agora_stream_overflows_total", "Subscribers ended with RESOURCE_EXHAUSTED for falling behind", ["feed"]))

# -- the event bus (services/kit/bus)
bus_published = _Family(Counter(
    "agora_bus_published_total", "Events the broker confirmed", ["type"]))
bus_consumed = _Family(Counter(
    "agora_bus_consumed_total", "Event deliveries handled, by outcome (ok, failed)",
    ["group", "type", "outcome"]))
bus_retries = _Family(Counter(
    "agora_bus_retries_total", "Failed deliveries scheduled for another attempt", ["group", "type"]))
bus_dead_letters = _Family(Counter(
    "agora_bus_dead_letters_total", "Events parked as dead letters after the last failed attempt",
    ["group", "type"]))
bus_lag = _Family(Histogram(
    "agora_bus_consumer_lag_seconds", "From the event's occurred_at to its handling starting", ["group"],
    buckets=_LAG))
bus_handle_duration = _Family(Histogram(
    "agora_bus_handle_duration_seconds", "Time a consumer's handler took per delivery", ["group"],
    buckets=_LATENCY))
bus_pending = _Family(Gauge(
    "agora_bus_consumer_pending", "Events delivered to this process and not yet handled", ["group"],
    multiprocess_mode=_LIVESUM))
outbox_relayed = Counter("agora_bus_outbox_relayed_total", "Events the outbox relays put on the bus")
outbox_failures = Counter("agora_bus_outbox_failures_total",
                          "Outbox relay rounds that failed (database or bus)")

# -- stores (services/kit/stores)
store_duration = _Family(Histogram(
    "agora_store_duration_seconds", "Database calls by backend and store operation (caller's wait included)",
    ["backend", "operation", "outcome"], buckets=_LATENCY))

# -- the bridge (gateway/telemetry.py)
http_duration = _Family(Histogram(
    "agora_http_request_duration_seconds",
    "Bridge requests by route (the RPC, or a fixed path), method, status",
    ["route", "method", "status"], buckets=_LATENCY))
http_active = _Family(Gauge(
    "agora_http_requests_active", "Bridge requests (and streams, WebSockets) open now", ["kind"],
    multiprocess_mode=_LIVESUM))
# Shared feeds (gateway/feeds.py sets the gauges on each tick of its feeds' timer: set_function would
# not reach a multiprocess /metrics).
edge_feeds = Gauge("agora_edge_feeds",
                   "Shared stream feeds the bridge holds now (one upstream call each)",
                   multiprocess_mode=_LIVESUM)
edge_feed_subscribers = Gauge("agora_edge_feed_subscribers",
                              "Subscribers attached to the bridge's shared feeds",
                              multiprocess_mode=_LIVESUM)
edge_feed_upstreams = _Family(Counter(
    "agora_edge_feed_upstream_calls_total",
    "Upstream calls the bridge's feeds opened: shared (one per feed) or catch_up (a subscriber's own "
    "call until the feed's ring holds what follows)", ["kind"]))
edge_feed_deliveries = _Family(Counter(
    "agora_edge_feed_deliveries_total",
    "Frames the bridge's feeds handed to subscribers: direct (the same wire bytes written straight to "
    "a connection that keeps up) or queued (for its writer, through ASGI's flow control)", ["path"]))
edge_feed_overflows = Counter(
    "agora_edge_feed_overflows_total",
    "Feed subscribers closed resumably for falling behind their byte budget")


@functools.lru_cache(maxsize=4096)
def split_method(full: str) -> tuple[str, str]:
    """'/agora.orders.v1.OrderService/CreateOrder' -> ('agora.orders.v1.OrderService', 'CreateOrder')."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service, method


# The store method being run, e.g. 'SqliteCatalogStore.reserve': set by `timed_operations` for the
# span of each public coroutine method of a store class, read by the kit's run/transaction/execute.
current_operation: contextvars.ContextVar[str] = contextvars.ContextVar("store_operation", default="unknown")


def store_operation() -> str:
    """The store method that asked for this database call ('unknown' outside a `timed_operations` class)."""
    return current_operation.get()


def timed_operations(cls: type[C]) -> type[C]:
    """Class decorator for a store adapter (or the shared SQL base of several): each public coroutine
    method names itself as the operation its database calls are timed under, by the class of the
    store it runs on ('PostgresPaymentStore.open', even where the method is the shared base's).
    Explicit, so no stack is walked: a method the decorator does not see counts as 'unknown'."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not inspect.iscoroutinefunction(method):
            continue
        setattr(cls, name, _naming(method, name))
    return cls


def _naming(method: Callable[..., Awaitable[T]], name: str) -> Callable[..., Awaitable[T]]:
    labels: dict[type, str] = {}

    @functools.wraps(method)
    async def named(self: Any, *args: Any, **kwargs: Any) -> T:
        kind = type(self)
        label = labels.get(kind)
        if label is None:
            label = labels[kind] = f"{kind.__name__}.{name}"
        token = current_operation.set(label)
        try:
            return await method(self, *args, **kwargs)
        finally:
            current_operation.reset(token)

    return named


# The operation name CassandraDatabase.execute runs under, for the request listener below (which
# runs on the requesting thread: an adapter's own calls in a worker thread set it there).
cassandra_operation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cassandra_operation", default=None)


def observe_cassandra_requests(session: Any) -> None:
    """Time every request on a cassandra-driver session, whoever makes it (the kit's execute, or an
    adapter's own calls in a worker thread): the listener runs on the requesting thread, so it can
    name the store method; the driver calls back on its own thread when the answer is in."""

    def on_request(future: Any) -> None:
        operation = cassandra_operation.get() or store_operation()
        started = time.perf_counter()
        seen = False

        def done(outcome: str) -> None:
            nonlocal seen
            if not seen:  # (the callbacks run again for every further page of a paged result)
                seen = True
                store_duration("cassandra", operation, outcome).observe(time.perf_counter() - started)

        future.add_callbacks(lambda _rows: done("ok"), lambda _exc: done("error"))

    session.add_request_init_listener(on_request)


async def timed_store_call(backend: str, operation: str, call: Awaitable[T]) -> T:
    """Await a database call, observing its latency under (backend, operation, ok|error)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await call
        outcome = "ok"
        return result
    finally:
        store_duration(backend, operation, outcome).observe(time.perf_counter() - started)
