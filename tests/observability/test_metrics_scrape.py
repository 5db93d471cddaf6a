"""Must show: after traffic, /metrics (the bridge's route, and a gRPC process's endpoint) has the RPC,
stream, bus, store and HTTP metrics with the expected labels and counts. One order is placed through
the bridge while its WatchOrder stream is open over SSE; counts are compared before and after."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.kit.telemetry.endpoint import MetricsEndpoint
from tests.observability.conftest import paid, place_order, shop
from tests.services.payments.pipeline import wait_for

pytestmark = pytest.mark.real

ORDERS = "agora.orders.v1.OrderService"
# The pipeline shops on the seed routes (POST /api/orders), which reach their own RPC.
PLACE = "SeedCreateOrder"


class Scrape:
    """One scrape, parsed: value(name, **labels) of the sample with exactly those labels (0 if absent)."""

    def __init__(self, text: str) -> None:
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels) -> float:
        return next((s.value for s in self.samples if s.name == name and s.labels == labels), 0.0)

    def names(self) -> set[str]:
        return {s.name for s in self.samples}


async def scrape(http) -> Scrape:
    r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return Scrape(r.text)


async def test_metrics_after_one_order_and_one_stream(pipeline, http):
    groups = pipeline.groups
    client, product = await shop(http, uuid.uuid4().hex[:8])
    before = await scrape(http)
    r = await place_order(http, client, product)
    order = r.json()

    # a live stream through the bridge (SSE) while the order moves
    events: list[dict] = []
    opened = asyncio.Event()

    async def watch():
        async with httpx.AsyncClient(base_url=pipeline.base_url, timeout=30.0,
                                     headers=http.headers) as sse, sse.stream(
                "GET", f"/v1/orders/{order['id']}:watch", headers={"accept": "text/event-stream"}) as stream:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    opened.set()

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(opened.wait(), 20)
    await wait_for(lambda: paid(http, order["id"]), "the order to be PAID")
    await wait_for(lambda: _notified(http, groups), "the notifications consumer to handle orders.order.paid")
    during = await scrape(http)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)

    def delta(name, **labels):
        return during.value(name, **labels) - before.value(name, **labels)

    # RPCs by service, method and code
    assert delta("agora_rpc_server_duration_seconds_count", service=ORDERS, method=PLACE, code="OK") == 1
    assert delta("agora_rpc_server_duration_seconds_bucket", service=ORDERS, method=PLACE, code="OK",
                 le="+Inf") == 1
    assert delta("agora_rpc_server_duration_seconds_count", service="agora.catalog.v1.CatalogService",
                 method="ReserveStock", code="OK") == 1
    # the open stream: on the gRPC server, in the orders feed, at the bridge
    assert during.value("agora_rpc_server_streams_active", service=ORDERS, method="WatchOrder") == 1
    assert delta("agora_stream_subscribers", feed="orders", kind="log") == 1
    assert delta("agora_http_requests_active", kind="http") >= 1
    # the bus: each event confirmed once, each group handled it once
    for kind in ("orders.order.created", "payments.payment.succeeded", "orders.order.paid"):
        assert delta("agora_bus_published_total", type=kind) == 1, kind
    assert delta("agora_bus_consumed_total", group=groups["payments.charge"], type="orders.order.created",
                 outcome="ok") == 1
    assert delta("agora_bus_consumed_total", group=groups["orders.payments"],
                 type="payments.payment.succeeded", outcome="ok") == 1
    assert delta("agora_bus_consumed_total", group=groups["notifications"], type="orders.order.paid",
                 outcome="ok") == 1
    assert delta("agora_bus_consumer_lag_seconds_count", group=groups["payments.charge"]) == 1
    assert during.value("agora_bus_consumer_pending", group=groups["payments.charge"]) == 0
    assert delta("agora_bus_dead_letters_total", group=groups["payments.charge"],
                 type="orders.order.created") == 0
    assert delta("agora_bus_outbox_relayed_total") >= 3
    # stores by backend and the store method that called
    operations = {(s.labels["backend"], s.labels["operation"]) for s in during.samples
                  if s.name == "agora_store_duration_seconds_count" and s.value > 0}
    expected = {("cassandra", "CassandraOrderStore.create"), ("postgres", "PostgresPaymentStore.open")} \
        if pipeline.backend == "real" \
        else {("sqlite", "SqliteOrderStore.create"), ("sqlite", "SqlitePaymentStore.open")}
    assert expected <= operations, sorted(operations)
    # the bridge: requests by the RPC they reached
    assert delta("agora_http_request_duration_seconds_count", route=f"{ORDERS}.{PLACE}", method="POST",
                 status="200") == 1
    # the process
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= during.names()

    # a gRPC process's own endpoint shows the same registry
    endpoint = MetricsEndpoint("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(timeout=10.0) as plain:
            direct = Scrape((await plain.get(endpoint.url)).text)
    finally:
        endpoint.close()
    assert direct.value("agora_rpc_server_duration_seconds_count", service=ORDERS, method=PLACE,
                        code="OK") >= during.value("agora_rpc_server_duration_seconds_count", service=ORDERS,
                                                   method=PLACE, code="OK")
    assert [e["change"]["status"] for e in events][:1] == ["ORDER_STATUS_PENDING"]


async def _notified(http, groups) -> bool:
    now = await scrape(http)
    return now.value("agora_bus_consumed_total", group=groups["notifications"], type="orders.order.paid",
                     outcome="ok") >= 1
