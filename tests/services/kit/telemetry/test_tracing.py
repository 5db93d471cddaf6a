"""Spans across gRPC (server and client interceptors), the bus (both adapters, and an outbox), logs
with trace ids, OTLP export, and tracing off: no spans, no headers."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from agora.events.v1.envelope_pb2 import Envelope
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry.trace import SpanKind, StatusCode

from services.kit import logs
from services.kit.bus import new_envelope
from services.kit.bus.inprocess import InProcessBus
from services.kit.bus.outbox import OutboxRelay
from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.interceptors import DeadlinePropagation
from services.kit.server import DomainServer
from services.kit.telemetry import tracing
from tests.services.kit import probe_service
from tests.services.kit.bus.support import unique, wait_for
from tests.services.kit.telemetry.conftest import one

PROBE = probe_service.DOMAIN.service
CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


async def echo_trace(request: bytes, context) -> bytes:
    """The traceparent this call arrived with ('' when none)."""
    return dict(context.invocation_metadata()).get("traceparent", "").encode()


def relay_to(target: str):
    channel = grpc.aio.insecure_channel(target, interceptors=[DeadlinePropagation()])

    async def relay(request: bytes, context) -> bytes:
        return await channel.unary_unary(f"/{PROBE}/EchoTrace")(b"", timeout=5)

    return channel, relay


@pytest.fixture
async def probes():
    """Two probe servers; the first's Relay calls the second's EchoTrace through DeadlinePropagation."""
    downstream = DomainServer(
        probe_service.spec({"EchoTrace": grpc.unary_unary_rpc_method_handler(echo_trace)}),
        host="127.0.0.1", port=0, grace=1.0)
    await downstream.start()
    relay_channel, relay = relay_to(downstream.address)
    upstream = DomainServer(probe_service.spec({"Relay": grpc.unary_unary_rpc_method_handler(relay)}),
                            host="127.0.0.1", port=0, grace=1.0)
    await upstream.start()
    channel = grpc.aio.insecure_channel(upstream.address)
    yield channel
    await channel.close()
    await relay_channel.close()
    await upstream.stop()
    await downstream.stop()


def call(channel, name: str):
    return channel.unary_unary(f"/{PROBE}/{name}")


async def test_server_span_continues_the_callers_trace(spans, probes):
    await call(probes, "Budget")(b"", timeout=5, metadata=(("traceparent", TRACEPARENT),))
    span = one(spans, f"{PROBE}/Budget")
    assert span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    assert f"{span.parent.span_id:016x}" == CALLER_SPAN and span.parent.is_remote
    assert span.attributes["rpc.service"] == PROBE and span.attributes["rpc.method"] == "Budget"
    assert span.attributes["rpc.grpc.status_code"] == 0
    assert span.status.status_code is StatusCode.UNSET


async def test_a_call_without_traceparent_starts_a_trace(spans, probes):
    await call(probes, "Budget")(b"", timeout=5)
    span = one(spans, f"{PROBE}/Budget")
    assert span.parent is None


async def test_downstream_call_is_a_client_span_whose_context_travels(spans, probes):
    seen = await call(probes, "Relay")(b"", timeout=5, metadata=(("traceparent", TRACEPARENT),))
    relay = one(spans, f"{PROBE}/Relay")
    client, echo = (one(spans, f"{PROBE}/EchoTrace", kind) for kind in (SpanKind.CLIENT, SpanKind.SERVER))
    assert client.name == f"{PROBE}/EchoTrace"
    assert client.parent.span_id == relay.context.span_id
    assert echo.parent.span_id == client.context.span_id and echo.kind is SpanKind.SERVER
    assert {s.context.trace_id for s in (relay, client, echo)} == {int(CALLER_TRACE, 16)}
    assert seen.decode() == f"00-{CALLER_TRACE}-{client.context.span_id:016x}-01"


async def test_server_failures_mark_the_span_and_caller_mistakes_do_not(spans, probes):
    for name in ("Crash", "Invalid"):
        with pytest.raises(grpc.aio.AioRpcError):
            await call(probes, name)(b"", timeout=5)
    crash, invalid = one(spans, f"{PROBE}/Crash"), one(spans, f"{PROBE}/Invalid")
    assert crash.status.status_code is StatusCode.ERROR and crash.attributes["rpc.grpc.status_code"] == 13
    assert invalid.status.status_code is StatusCode.UNSET and invalid.attributes["rpc.grpc.status_code"] == 3


async def test_stream_span_lasts_the_stream(spans, probes):
    stream = probes.unary_stream(f"/{PROBE}/Ticks")(b"", timeout=5)
    got = [m async for m in _take(stream, 3)]
    stream.cancel()
    assert got == [b"1", b"2", b"3"]
    await wait_for(lambda: any(s.name == f"{PROBE}/Ticks" for s in spans.get_finished_spans()), 5,
                   "the stream span")
    assert one(spans, f"{PROBE}/Ticks").attributes["rpc.grpc.status_code"] \
        == grpc.StatusCode.CANCELLED.value[0]


async def _take(stream, n):
    async for message in stream:
        yield message
        n -= 1
        if n == 0:
            return


# -- the bus


def _event(key: str = "k1") -> Envelope:
    return new_envelope("tests.thing.happened", "tests", key, StringValue(value="x"))


async def _consume_one(bus, group: str, publish) -> tuple[Envelope, tuple[str, str] | None]:
    """Subscribe, run `publish()`, return the event the handler saw and the trace ids current in it."""
    seen: list = []

    async def handler(envelope: Envelope) -> None:
        seen.append((envelope, tracing.current_ids()))

    subscription = await bus.subscribe(group, ["tests.thing.*"], handler)
    try:
        await publish()
        await wait_for(lambda: bool(seen), 15, "the event to be consumed")
    finally:
        await subscription.cancel()
    return seen[0]


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def bus(request):
    if request.param == "inprocess":
        bus = InProcessBus()
    else:
        from services.kit.bus.rabbitmq import RabbitBus

        bus = RabbitBus(request.getfixturevalue("amqp_url"), reconnect_max_delay=1.0)
    await bus.start()
    groups: list[str] = []
    yield bus, groups
    await bus.close()
    if request.param == "rabbitmq":
        for group in groups:
            await bus.delete_group(group)


async def test_consumer_span_is_a_child_of_the_publish_span(spans, bus):
    bus, groups = bus
    groups.append(group := unique("trace"))
    outer = tracing.start("the request", SpanKind.SERVER)
    token = tracing.activate(outer)
    try:
        event = _event()
    finally:
        tracing.deactivate(token)
        outer.end()
    envelope, ids = await _consume_one(bus, group, lambda: bus.publish([event]))
    publish = one(spans, "publish tests.thing.happened")
    await wait_for(lambda: any(s.kind is SpanKind.CONSUMER for s in spans.get_finished_spans()), 5,
                   "consumer span")
    consumer = one(spans, f"{group} process tests.thing.happened")
    assert publish.kind is SpanKind.PRODUCER and publish.parent.span_id == outer.context.span_id
    assert consumer.kind is SpanKind.CONSUMER and consumer.parent.span_id == publish.context.span_id
    assert consumer.context.trace_id == outer.context.trace_id
    assert consumer.attributes["messaging.consumer.group.name"] == group
    assert consumer.attributes["messaging.message.id"] == event.id
    assert envelope.headers["traceparent"] == tracing.traceparent(publish)
    assert ids == (f"{consumer.context.trace_id:032x}", f"{consumer.context.span_id:016x}")


async def test_failed_handling_is_an_error_span_per_attempt(spans):
    bus = InProcessBus()
    await bus.start()
    attempts = []

    async def flaky(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    group = unique("flaky")
    await bus.subscribe(group, ["tests.thing.*"], flaky, retry_delay=0.01)
    await bus.publish([_event()])
    name = f"{group} process tests.thing.happened"
    await wait_for(lambda: sum(s.name == name for s in spans.get_finished_spans()) == 2, 5, "two attempts")
    await bus.close()
    first, second = sorted((s for s in spans.get_finished_spans() if s.name == name),
                           key=lambda s: s.start_time)
    assert first.status.status_code is StatusCode.ERROR and "first attempt fails" in first.status.description
    assert second.status.status_code is StatusCode.UNSET
    assert first.attributes["messaging.delivery.attempt"] == 1 \
        and second.attributes["messaging.delivery.attempt"] == 2
    assert first.parent.span_id == second.parent.span_id  # both children of the one publish


async def test_context_captured_at_write_time_travels_through_the_outbox(spans, tmp_path):
    """The relay publishes outside any request; the consumer still joins the writer's trace."""
    bus = InProcessBus()
    await bus.start()
    path = tmp_path / "outbox.sqlite3"
    outbox = SqliteOutbox("outbox")
    conn = sqlite3.connect(path)
    outbox.create_schema(conn)
    writer = tracing.start("the write", SpanKind.SERVER)
    token = tracing.activate(writer)
    try:
        with conn:
            outbox.add(conn, [_event()])
    finally:
        tracing.deactivate(token)
        writer.end()
    conn.close()
    relay = OutboxRelay(bus, outbox, lambda: sqlite3.connect(path, isolation_level=None), idle_wait=0.05)
    group = unique("outbox")

    async def relay_later() -> None:
        assert tracing.current_ids() is None  # nothing current where the relay runs
        await relay.start()

    try:
        await asyncio.create_task(_consume_one(bus, group, relay_later), context=contextvars.Context())
    finally:
        await relay.stop()
        await bus.close()
    consumer = one(spans, f"{group} process tests.thing.happened")
    publish = one(spans, "publish tests.thing.happened")
    assert consumer.parent.span_id == publish.context.span_id
    assert publish.parent.span_id == writer.context.span_id
    assert consumer.context.trace_id == writer.context.trace_id


# -- logs


def _log_line(fmt: str) -> str:
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure("INFO", fmt, stream=out)
    try:
        logging.getLogger("agora.test").info("hello")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    return out.getvalue().strip()


async def test_log_lines_carry_the_current_trace_and_span_ids(spans):
    assert "trace_id" not in json.loads(_log_line("json"))
    span = tracing.start("work", SpanKind.INTERNAL)
    token = tracing.activate(span)
    try:
        entry = json.loads(_log_line("json"))
        text = _log_line("text")
    finally:
        tracing.deactivate(token)
        span.end()
    assert entry["trace_id"] == f"{span.context.trace_id:032x}" \
        and entry["span_id"] == f"{span.context.span_id:016x}"
    assert f"trace={span.context.trace_id:032x}" in text


# -- off


async def test_off_means_no_spans_no_headers_and_the_callers_context_untouched(probes):
    assert not tracing.enabled()
    assert "traceparent" not in _event().headers
    assert await call(probes, "Relay")(b"", timeout=5) == b""  # DeadlinePropagation added nothing
    assert tracing.current_ids() is None
    assert "trace_id" not in json.loads(_log_line("json"))


# -- export


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's hook name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Collector.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set():
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Collector.received.clear()
    try:
        assert tracing.configure("", "agora-test") is False and not tracing.enabled()
        assert tracing.configure(f"http://127.0.0.1:{server.server_port}", "agora-test")
        span = tracing.start("exported", SpanKind.INTERNAL)
        span.end()
        await asyncio.to_thread(tracing.uninstall)  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    assert [path for path, _ in _Collector.received] == ["/v1/traces"]
    request = ExportTraceServiceRequest.FromString(_Collector.received[0][1])
    resource = request.resource_spans[0]
    attributes = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert attributes["service.name"] == "agora-test"
    assert [s.name for s in resource.scope_spans[0].spans] == ["exported"]
