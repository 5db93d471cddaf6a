"""End to end over REST through the bridge: client, seller, products, an order; stock reserved; the
order by id and by client; every step in the audit log, in order, queryable and live. Then bad input
and 100 concurrent orders on a stock of 10. Runs on embedded and on real backends."""

from __future__ import annotations

import asyncio
import json
import uuid

import grpc
import httpx
import pytest
from agora.orders.v1 import orders_pb2, orders_pb2_grpc
from google.protobuf import json_format
from httpx_sse import aconnect_sse

pytestmark = pytest.mark.real


def operator(runtime) -> dict:
    """These tests watch the whole pipeline as an operator does: with the mesh's service credential
    (anonymous callers are never internal; tests/security checks what they may do)."""
    return {"x-api-key": runtime.settings.service_api_key}


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def http(commerce):
    async with httpx.AsyncClient(base_url=commerce.base_url, timeout=30.0,
                                 headers=operator(commerce.runtime)) as client:
        yield client


async def make_client(http, name="Ada") -> dict:
    r = await http.post("/api/clients", json={"name": name, "email": f"{name.lower()}-{uid()}@example.com"})
    assert r.status_code == 200, r.text
    return r.json()


async def make_seller(http) -> dict:
    r = await http.post("/api/sellers", json={"name": "Shop", "email": f"shop-{uid()}@example.com",
                                              "description": "books and tools"})
    assert r.status_code == 200, r.text
    return r.json()


async def make_product(http, seller_id, name="Widget", stock=10, amount="1999") -> dict:
    r = await http.post("/api/products", json={
        "seller_id": seller_id, "name": name, "category": "tools", "stock": stock,
        "price": {"currency_code": "USD", "amount_minor": amount}, "attributes": {"color": "red", "size": 3}})
    assert r.status_code == 200, r.text
    return r.json()


async def wait_for(check, what: str, attempts: int = 200, delay: float = 0.05):
    for _ in range(attempts):
        result = await check()
        if result:
            return result
        await asyncio.sleep(delay)
    raise AssertionError(f"timed out waiting for {what}")


async def test_order_flow_over_rest_with_audit_trail(commerce, http):
    live: list[dict] = []
    ready = asyncio.Event()

    async def watch() -> None:
        async with aconnect_sse(http, "GET", "/v1/audit/events:watch",
                                headers={"Accept": "text/event-stream"}) as source:
            ready.set()
            async for message in source.aiter_sse():
                if message.data:
                    live.append(json.loads(message.data))

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.2)  # the stream is registered server-side

    client = await make_client(http)
    seller = await make_seller(http)
    book = await make_product(http, seller["id"], "Blue book", stock=5, amount="2500")
    pen = await make_product(http, seller["id"], "Red pen", stock=7, amount="150")
    assert book["price"] == {"currencyCode": "USD", "amountMinor": "2500"}
    assert book["attributes"] == {"color": "red", "size": 3}

    r = await http.post("/api/orders", json={"client_id": client["id"], "items": [
        {"product_id": book["id"], "quantity": 2}, {"product_id": pen["id"], "quantity": 3}]})
    assert r.status_code == 200, r.text
    order = r.json()
    assert order["status"] == "ORDER_STATUS_PENDING"
    assert order["total"] == {"currencyCode": "USD", "amountMinor": str(2 * 2500 + 3 * 150)}
    assert [i["productName"] for i in order["items"]] == ["Blue book", "Red pen"]

    # stock is reserved
    assert int((await http.get(f"/api/products/{book['id']}")).json()["stock"]) == 3
    assert int((await http.get(f"/api/products/{pen['id']}")).json()["stock"]) == 4

    # readable by id and by client
    by_id = (await http.get(f"/api/orders/{order['id']}")).json()
    assert by_id["id"] == order["id"] and by_id["history"][0]["reason"] == "order placed"
    by_client = await http.get(f"/api/orders/client/{client['id']}")
    assert [o["id"] for o in by_client.json()] == [order["id"]]

    # the client logs its own event
    r = await http.post("/api/log/event", json={"type": "web.checkout.completed", "key": order["id"],
                                                "payload": {"cart": 2}})
    assert r.status_code == 200, r.text

    ours = {client["id"], seller["id"], book["id"], pen["id"], order["id"]}
    expected = ["customers.client.created", "customers.seller.created", "catalog.product.created",
                "catalog.product.created", "catalog.product.stock_changed", "catalog.product.stock_changed",
                "orders.order.created", "web.checkout.completed"]

    async def queried():
        r = await http.get("/v1/audit/events", params={"page_size": 500})
        events = [e for e in r.json()["events"] if e.get("key") in ours]
        return events if len(events) >= len(expected) else None

    events = await wait_for(queried, "every step in the audit log")
    types = [e["type"] for e in events]
    assert sorted(types) == sorted(expected)
    # in order: what happened first was recorded as happening first
    position = {t: types.index(t) for t in set(types)}
    assert position["customers.client.created"] < position["customers.seller.created"] \
        < position["catalog.product.created"] < position["orders.order.created"] \
        < position["web.checkout.completed"]
    created = next(e for e in events if e["type"] == "orders.order.created")
    assert created["payload"]["paymentCardToken"] == "[redacted]"
    assert created["payloadType"] == "agora.events.v1.OrderCreated"

    # filtered query by type pattern and key
    r = await http.get("/v1/audit/events", params={"type_pattern": "orders.*", "key": order["id"]})
    assert [e["type"] for e in r.json()["events"]] == ["orders.order.created"]

    # live: the same steps arrived on the stream, in sequence order
    await wait_for(lambda: _done(live, ours, len(expected)), "the live audit stream")
    watcher.cancel()
    streamed = [m for m in live if m["event"].get("key") in ours]
    assert sorted(m["event"]["type"] for m in streamed) == sorted(expected)
    sequences = [int(m["sequence"]) for m in live]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)


async def _done(live, ours, n):
    return len([m for m in live if m["event"].get("key") in ours]) >= n


async def test_watch_order_streams_history_and_cancel(commerce, http):
    client = await make_client(http)
    seller = await make_seller(http)
    product = await make_product(http, seller["id"], stock=4)
    order = (await http.post("/api/orders", json={"client_id": client["id"], "items": [
        {"product_id": product["id"], "quantity": 4}]})).json()
    seen = []

    async def watch():
        # Over gRPC: the bridge routes GET /v1/orders/{id}:watch to GetOrder (reported to the lead).
        async with grpc.aio.insecure_channel(commerce.target("orders")) as channel:
            stub = orders_pb2_grpc.OrderServiceStub(channel)
            async for message in stub.WatchOrder(orders_pb2.WatchOrderRequest(order_id=order["id"]),
                                                  timeout=30,
                                                  metadata=tuple(operator(commerce.runtime).items())):
                seen.append(json_format.MessageToDict(message))

    task = asyncio.create_task(watch())
    await wait_for(lambda: _len_at_least(seen, 1), "the order's first status")
    r = await http.post(f"/v1/orders/{order['id']}:cancel", json={})
    assert r.json()["order"]["status"] == "ORDER_STATUS_CANCELLED"
    await asyncio.wait_for(task, 10)  # the stream ends after a final status
    assert [m["change"]["status"] for m in seen] == ["ORDER_STATUS_PENDING", "ORDER_STATUS_CANCELLED"]
    assert [int(m["sequence"]) for m in seen] == [1, 2]
    # the cancellation released the stock (catalog consumes orders.order.cancelled)
    await wait_for(lambda: _stock_is(http, product["id"], 4), "the stock to come back")


async def _len_at_least(items, n):
    return len(items) >= n


async def _stock_is(http, product_id, n):
    return int((await http.get(f"/api/products/{product_id}")).json()["stock"]) == n


async def test_bad_input_is_a_clear_4xx(commerce, http):
    client = await make_client(http, "Bob")
    seller = await make_seller(http)
    product = await make_product(http, seller["id"])
    ghost = str(uuid.uuid4())

    r = await http.post("/api/orders", json={"client_id": ghost, "items": [{"product_id": product["id"],
                                                                            "quantity": 1}]})
    assert r.status_code == 400 and "client_id" in r.json()["message"] and ghost in r.json()["message"]

    r = await http.post("/api/orders", json={"client_id": client["id"], "items": [
        {"product_id": product["id"], "quantity": 1}, {"product_id": ghost, "quantity": 1}]})
    assert r.status_code == 400 and "items[1].product_id" in r.json()["message"] \
        and ghost in r.json()["message"]
    violations = [v for d in r.json()["details"]
                  for v in d.get("field_violations", d.get("fieldViolations", []))]
    assert [v["field"] for v in violations] == ["items[1].product_id"]

    r = await http.post("/api/orders", json={"client_id": client["id"], "items": [
        {"product_id": product["id"], "quantity": -2}]})
    assert r.status_code == 400 and "items[0].quantity" in r.json()["message"]

    for price in ("19.995", "1999.5", 19.99):
        r = await http.post("/api/products", json={"seller_id": seller["id"], "name": "Cheap",
                                                   "price": {"currency_code": "USD", "amount_minor": price}})
        assert r.status_code == 400, (price, r.text)

    r = await http.post("/api/products", json={"seller_id": seller["id"], "name": "Neg",
                                               "price": {"currency_code": "USD", "amount_minor": "-1"}})
    assert r.status_code == 400 and "product.price.amount_minor" in r.json()["message"]

    r = await http.post("/api/products", json={"seller_id": ghost, "name": "Orphan",
                                               "price": {"currency_code": "USD", "amount_minor": "1"}})
    assert r.status_code == 400 and "product.seller_id" in r.json()["message"]

    r = await http.post("/api/clients", json={"name": "Dup", "email": client["email"].upper()})
    assert r.status_code == 409, r.text

    r = await http.post("/api/clients", json={"name": "", "email": "not-an-email"})
    assert r.status_code == 400 and "client.email" in r.json()["message"] \
        and "client.name" in r.json()["message"]

    assert (await http.get(f"/api/orders/{ghost}")).status_code == 404
    assert (await http.get(f"/api/clients/{ghost}")).status_code == 404
    assert (await http.get("/api/clients", params={"page_token": "garbage"})).status_code == 400


async def test_hundred_concurrent_orders_on_stock_of_ten(commerce, http):
    client = await make_client(http, "Crowd")
    seller = await make_seller(http)
    product = await make_product(http, seller["id"], stock=10)

    async def order():
        r = await http.post("/api/orders", json={"client_id": client["id"], "items": [
            {"product_id": product["id"], "quantity": 1}]})
        return r.status_code

    codes = await asyncio.gather(*(order() for _ in range(100)))
    assert codes.count(200) == 10, sorted(set(codes))
    assert codes.count(400) == 90  # FAILED_PRECONDITION: not enough stock
    assert int((await http.get(f"/api/products/{product['id']}")).json()["stock"]) == 0
    orders = (await http.get(f"/api/orders/client/{client['id']}", params={"page_size": 500})).json()
    assert len(orders) == 10


async def test_lists_page_and_search(commerce, http):
    tag = uid()
    for i in range(3):
        r = await http.post("/api/clients",
                            json={"name": f"Pager {tag} {i}", "email": f"p{i}-{tag}@example.com"})
        assert r.status_code == 200
    r = await http.get("/v1/clients", params={"query": tag, "page_size": 2})
    assert r.status_code == 200, r.text
    first = r.json()
    assert [c["name"] for c in first["clients"]] == [f"Pager {tag} 0", f"Pager {tag} 1"]
    r = await http.get("/v1/clients",
                       params={"query": tag, "page_size": 2, "page_token": first["nextPageToken"]})
    assert [c["name"] for c in r.json()["clients"]] == [f"Pager {tag} 2"] \
        and not r.json().get("nextPageToken")
    seller = await make_seller(http)
    await make_product(http, seller["id"], f"Lamp{tag}")
    r = await http.get("/v1/products", params={"query": f"lamp{tag}"})
    assert [p["name"] for p in r.json()["products"]] == [f"Lamp{tag}"]
    r = await http.get("/api/products", params={"seller_id": seller["id"]})
    assert [p["name"] for p in r.json()] == [f"Lamp{tag}"]


async def test_health_through_the_bridge(commerce, http):
    async def serving():
        r = await http.get("/health")
        return r.status_code == 200 and r.json()
    body = await wait_for(serving, "every commerce service to be SERVING")
    assert body["status"] == "SERVING"


async def test_watch_product_streams_stock_changes(commerce, http):
    from agora.catalog.v1 import catalog_pb2, catalog_pb2_grpc

    seller = await make_seller(http)
    product = await make_product(http, seller["id"], stock=5)
    seen = []

    async def watch():
        async with grpc.aio.insecure_channel(commerce.target("catalog")) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            request = catalog_pb2.WatchProductRequest(product_id=product["id"])
            async for snap in stub.WatchProduct(request, timeout=30):
                seen.append((snap.sequence, snap.stock))
                if snap.stock == 12:
                    return

    task = asyncio.create_task(watch())
    await wait_for(lambda: _len_at_least(seen, 1), "the first snapshot")
    r = await http.post(f"/v1/products/{product['id']}:adjustStock", json={"delta": 7, "reason": "restock"})
    assert r.status_code == 200, r.text
    await asyncio.wait_for(task, 10)
    assert seen[0][1] == 5 and seen[-1][1] == 12
    assert [s for s, _ in seen] == sorted({s for s, _ in seen})  # versions strictly increase
