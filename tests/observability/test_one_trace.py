"""Must show: one order through the mesh is one trace. The bridge's span (a child of the caller's
traceparent) -> the orders RPC -> the publish of orders.order.created -> the payments consumer ->
the publish of payments.payment.succeeded -> orders' consumer -> the publish of orders.order.paid ->
the notification (the notifications consumer), every link checked; embedded and on RabbitMQ,
Cassandra (orders' outbox), PostgreSQL and MongoDB."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.trace import SpanKind

from tests.observability.conftest import paid, place_order, shop
from tests.services.payments.pipeline import wait_for

pytestmark = pytest.mark.real

CALLER_TRACE = uuid.uuid4().hex
CALLER_SPAN = uuid.uuid4().hex[:16]


def find(spans, name: str, kind: SpanKind):
    found = [s for s in spans if s.name == name and s.kind is kind]
    assert len(found) == 1, (
        f"expected one {kind.name} span {name!r}; the trace has {sorted(s.name for s in spans)}")
    return found[0]


def child_of(span, parent) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


async def test_one_order_is_one_trace_from_the_bridge_to_the_notification(pipeline, http, exporter):
    client, product = await shop(http, uuid.uuid4().hex[:8])
    exporter.clear()
    trace_id = f"{uuid.uuid4().hex}"
    r = await place_order(http, client, product, headers={"traceparent": f"00-{trace_id}-{CALLER_SPAN}-01"})
    order = r.json()
    await wait_for(lambda: paid(http, order["id"]), "the order to be PAID")

    groups = pipeline.groups
    notified = f"{groups['notifications']} process orders.order.paid"

    async def whole_trace():
        spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
        return spans if any(s.name == notified for s in spans) else None

    spans = await wait_for(whole_trace, "the notification's span in the order's trace")

    bridge = find(spans, "POST agora.orders.v1.OrderService.SeedCreateOrder", SpanKind.SERVER)
    rpc = find(spans, "agora.orders.v1.OrderService/SeedCreateOrder", SpanKind.SERVER)
    created = find(spans, "publish orders.order.created", SpanKind.PRODUCER)
    charge = find(spans, f"{groups['payments.charge']} process orders.order.created", SpanKind.CONSUMER)
    succeeded = find(spans, "publish payments.payment.succeeded", SpanKind.PRODUCER)
    outcome = find(spans, f"{groups['orders.payments']} process payments.payment.succeeded",
                   SpanKind.CONSUMER)
    order_paid = find(spans, "publish orders.order.paid", SpanKind.PRODUCER)
    notification = find(spans, notified, SpanKind.CONSUMER)

    # the bridge continues the caller's trace and says so in the response
    assert f"{bridge.parent.span_id:016x}" == CALLER_SPAN and bridge.parent.is_remote
    assert r.headers["traceparent"] == f"00-{trace_id}-{bridge.context.span_id:016x}-01"
    assert bridge.attributes["http.response.status_code"] == 200
    # each hop a child of the one before
    assert child_of(rpc, bridge), "the orders RPC is not the bridge span's child"
    assert child_of(created, rpc), "the publish is not the RPC's child"
    assert child_of(charge, created), "the payments consumer is not the publish's child"
    assert child_of(succeeded, charge)
    assert child_of(outcome, succeeded)
    assert child_of(order_paid, outcome)
    assert child_of(notification, order_paid), (
        "the notification is not a child of orders.order.paid's publish")
    assert notification.attributes["messaging.message.id"]
    assert rpc.attributes["rpc.grpc.status_code"] == 0

    # one tree: every span of the trace hangs from the bridge span (the caller's span is the only
    # outside parent)
    ids = {s.context.span_id for s in spans}
    orphans = [s.name for s in spans if s is not bridge and (s.parent is None or s.parent.span_id not in ids)]
    assert not orphans, f"spans of the trace whose parent is not in it: {orphans}"
    # the other consumers of the same events joined it too (the notification for the payment, the audit log)
    assert any(s.name == f"{groups['notifications']} process payments.payment.succeeded" for s in spans)
    assert any(s.kind is SpanKind.CONSUMER and "process orders.order.created" in s.name
               and s.name.startswith("test-audit-") for s in spans)
