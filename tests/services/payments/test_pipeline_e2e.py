"""End to end over REST (through the bridge), embedded and on real PostgreSQL, Cassandra, MongoDB and
RabbitMQ: place an order -> payment succeeds -> PAID -> an e-mail arrives at the SMTP server; each
step on WatchOrder and in the audit log. A declined card -> PAYMENT_FAILED, stock released, failure
e-mail. Cancel before and after payment; a user cannot read another user's order."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import httpx
import pytest
from agora.orders.v1 import orders_pb2, orders_pb2_grpc
from google.protobuf import json_format

from tests.services.payments.pipeline import wait_for

pytestmark = pytest.mark.real


def operator(runtime) -> dict:
    """These tests watch the whole pipeline as an operator does: with the mesh's service credential
    (anonymous callers are never internal; tests/security checks what they may do)."""
    return {"x-api-key": runtime.settings.service_api_key}


def uid() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
async def http(pipeline):
    async with httpx.AsyncClient(base_url=pipeline.base_url, timeout=30.0,
                                 headers=operator(pipeline.mesh.runtime)) as client:
        yield client


async def shop(http, stock=5, amount="2500", phone=""):
    address = f"ada-{uid()}@example.com"
    body = {"name": "Ada", "email": address}
    if phone:
        body["phone"] = phone
    client = (await http.post("/api/clients", json=body)).json()
    seller = (await http.post("/api/sellers", json={"name": "Shop",
                                                    "email": f"shop-{uid()}@example.com"})).json()
    r = await http.post("/api/products", json={"seller_id": seller["id"], "name": "Blue book", "stock": stock,
                                               "price": {"currency_code": "USD", "amount_minor": amount}})
    assert r.status_code == 200, r.text
    return client, r.json()


async def watch_order(pipeline, order_id: str, seen: list, metadata=None):
    metadata = tuple(operator(pipeline.mesh.runtime).items()) if metadata is None else metadata
    async with grpc.aio.insecure_channel(pipeline.target("orders")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)
        async for message in stub.WatchOrder(orders_pb2.WatchOrderRequest(order_id=order_id), timeout=60,
                                             metadata=metadata):
            seen.append(json_format.MessageToDict(message))


async def order_status(http, order_id: str, status: str):
    r = await http.get(f"/v1/orders/{order_id}")  # as the operator: every order, the seed shop's and users'
    return r.json()["order"] if r.status_code == 200 and r.json()["order"]["status"] == status else None


async def test_paid_order_end_to_end(pipeline, http):
    client, book = await shop(http, phone="+15551234567")
    r = await http.post("/api/orders", json={"client_id": client["id"], "card_token": "tok_ok",
                                             "items": [{"product_id": book["id"], "quantity": 2}]})
    assert r.status_code == 200, r.text
    order = r.json()
    seen: list = []
    watcher = asyncio.create_task(watch_order(pipeline, order["id"], seen))

    paid = await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_PAID"),
                          "the order to be PAID")
    payment = (await http.get(f"/v1/orders/{order['id']}/payment")).json()["payment"]
    assert payment["status"] == "PAYMENT_STATUS_SUCCEEDED" and payment["attempts"] == 1
    assert payment["amount"] == {"currencyCode": "USD", "amountMinor": "5000"}
    assert payment["providerReference"].startswith("test_") and payment["cardHint"] == "k_ok"
    assert paid["paymentId"] == payment["id"]
    assert [h["status"] for h in paid["history"]] == ["ORDER_STATUS_PENDING", "ORDER_STATUS_PAID"]

    # e-mails arrive at the SMTP server: placed, then paid; an SMS went out too
    mails = await wait_for(lambda: _mails(pipeline, client["email"], 2), "two e-mails at the SMTP server")
    subjects = sorted(m["Subject"] for m in mails)
    assert subjects == sorted([f"Order {order['id']} received", f"Order {order['id']} is paid"])
    assert "5000" not in mails[0].get_payload() and "50.00 USD" in "".join(m.get_payload() for m in mails)
    await wait_for(lambda: _sms(pipeline, "+15551234567", 2), "two SMS")
    r = await http.get("/v1/notifications", params={"order_id": order["id"]})
    rows = r.json()["notifications"]
    assert sorted((n["template"], n["channel"], n["status"]) for n in rows) == sorted([
        ("order_placed", "NOTIFICATION_CHANNEL_EMAIL", "NOTIFICATION_STATUS_SENT"),
        ("order_placed", "NOTIFICATION_CHANNEL_SMS", "NOTIFICATION_STATUS_SENT"),
        ("order_paid", "NOTIFICATION_CHANNEL_EMAIL", "NOTIFICATION_STATUS_SENT"),
        ("order_paid", "NOTIFICATION_CHANNEL_SMS", "NOTIFICATION_STATUS_SENT")])

    # WatchOrder showed every transition (the stream stays open after PAID: a refund may follow)
    await wait_for(lambda: _at_least(seen, 2), "both transitions on WatchOrder")
    watcher.cancel()
    assert [m["change"]["status"] for m in seen] == ["ORDER_STATUS_PENDING", "ORDER_STATUS_PAID"]
    assert [int(m["sequence"]) for m in seen] == [1, 2]

    # every step in the audit log
    expected = {"orders.order.created", "payments.payment.succeeded", "orders.order.paid"}

    async def audited():
        r = await http.get("/v1/audit/events", params={"key": order["id"], "page_size": 100})
        types = [e["type"] for e in r.json()["events"]]
        return types if expected <= set(types) else None

    types = await wait_for(audited, "the pipeline's steps in the audit log")
    assert types.count("payments.payment.succeeded") == 1
    assert pipeline.provider.charges.get(payment["id"])  # charged exactly once, under the payment id


async def test_declined_card_fails_order_releases_stock_and_mails(pipeline, http):
    client, book = await shop(http, stock=3)
    r = await http.post("/api/orders", json={"client_id": client["id"], "card_token": "tok_decline",
                                             "items": [{"product_id": book["id"], "quantity": 3}]})
    order = r.json()
    assert int((await http.get(f"/api/products/{book['id']}")).json()["stock"]) == 0
    seen: list = []
    watcher = asyncio.create_task(watch_order(pipeline, order["id"], seen))
    failed = await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_PAYMENT_FAILED"),
                            "the order to be PAYMENT_FAILED")
    assert failed["history"][-1]["reason"] == "card_declined"
    await asyncio.wait_for(watcher, 20)  # a final status ends the stream
    assert [m["change"]["status"] for m in seen] == ["ORDER_STATUS_PENDING", "ORDER_STATUS_PAYMENT_FAILED"]
    payment = (await http.get(f"/v1/orders/{order['id']}/payment")).json()["payment"]
    assert payment["status"] == "PAYMENT_STATUS_FAILED" and payment["failureReason"] == "card_declined"
    assert pipeline.provider.charges.get(payment["id"]) is None

    async def stock_back():
        return int((await http.get(f"/api/products/{book['id']}")).json()["stock"]) == 3

    await wait_for(stock_back, "the stock to be released")
    mails = await wait_for(lambda: _mails(pipeline, client["email"], 2), "the failure e-mail")
    failure = next(m for m in mails if m["Subject"].startswith("Payment failed"))
    assert "card declined" in failure.get_payload()


@pytest.mark.parametrize("token,status,reason,attempts", [
    ("tok_insufficient_funds", "PAYMENT_STATUS_FAILED", "insufficient_funds", 1),
    ("tok_transient", "PAYMENT_STATUS_SUCCEEDED", "", 3),
    ("tok_timeout", "PAYMENT_STATUS_FAILED", "provider_timeout", 4),
    ("tok_stolen", "PAYMENT_STATUS_FAILED", "invalid_card_token", 1),
])
async def test_test_provider_tokens(pipeline, http, token, status, reason, attempts):
    client, book = await shop(http)
    order = (await http.post("/api/orders", json={"client_id": client["id"], "card_token": token,
                                                  "items": [{"product_id": book["id"],
                                                             "quantity": 1}]})).json()

    async def outcome():
        r = await http.get(f"/v1/orders/{order['id']}/payment")
        p = r.json().get("payment") if r.status_code == 200 else None
        return p if p and p["status"] in ("PAYMENT_STATUS_SUCCEEDED", "PAYMENT_STATUS_FAILED") else None

    payment = await wait_for(outcome, f"the payment outcome for {token}")
    assert (payment["status"], payment.get("failureReason", ""), payment["attempts"]) == (
        status, reason, attempts)
    final = "ORDER_STATUS_PAID" if status == "PAYMENT_STATUS_SUCCEEDED" else "ORDER_STATUS_PAYMENT_FAILED"
    await wait_for(lambda: order_status(http, order["id"], final), f"the order to be {final}")


async def test_cancel_paid_order_refunds_it(pipeline, http):
    client, book = await shop(http)
    order = (await http.post("/api/orders", json={"client_id": client["id"],
                                                  "items": [{"product_id": book["id"],
                                                             "quantity": 1}]})).json()
    await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_PAID"), "PAID")
    r = await http.post(f"/v1/orders/{order['id']}:cancel", json={"reason": "changed my mind"})
    assert r.status_code == 200 and r.json()["order"]["status"] == "ORDER_STATUS_CANCELLED"
    refunded = await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_REFUNDED"), "REFUNDED")
    assert [h["status"] for h in refunded["history"]][-2:] == ["ORDER_STATUS_CANCELLED",
                                                               "ORDER_STATUS_REFUNDED"]
    payment = (await http.get(f"/v1/orders/{order['id']}/payment")).json()["payment"]
    assert payment["status"] == "PAYMENT_STATUS_REFUNDED" and payment["refundReference"].startswith("test_")
    # refunding again answers it unchanged
    again = await http.post(f"/v1/payments/{payment['id']}:refund", json={})
    assert again.status_code == 200 and (
        again.json()["payment"]["refundReference"] == payment["refundReference"])
    await wait_for(lambda: _mails_with(pipeline, client["email"], f"Refund for order {order['id']}"),
                   "refund e-mail")


async def test_refund_of_a_failed_payment_is_a_precondition_failure(pipeline, http):
    client, book = await shop(http)
    order = (await http.post("/api/orders", json={"client_id": client["id"], "card_token": "tok_decline",
                                                  "items": [{"product_id": book["id"],
                                                             "quantity": 1}]})).json()
    await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_PAYMENT_FAILED"), "PAYMENT_FAILED")
    payment = (await http.get(f"/v1/orders/{order['id']}/payment")).json()["payment"]
    r = await http.post(f"/v1/payments/{payment['id']}:refund", json={})
    assert r.status_code == 400 and "SUCCEEDED" in r.json()["message"]
    assert (await http.get(f"/v1/payments/{uuid.uuid4()}")).status_code == 404
    assert (await http.get("/v1/payments", params={"page_token": "junk"})).status_code == 400
    r = await http.get("/v1/payments", params={"order_id": order["id"]})
    assert [p["id"] for p in r.json()["payments"]] == [payment["id"]]


async def test_a_user_cannot_read_another_users_order(pipeline, http):
    async def user():
        name = f"u{uid()}"
        async with httpx.AsyncClient(base_url=pipeline.base_url, timeout=30.0) as fresh:  # no cookies
            r = await fresh.post("/v1/users", json={"user_name": name, "email": f"{name}@example.com",
                                                    "password": "correct horse battery"})
            assert r.status_code == 200, r.text
            r = await fresh.post("/v1/auth/login",
                                 json={"user_name": name, "password": "correct horse battery"})
            assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['sessionToken']}"}

    alice, mallory = await user(), await user()
    r = await http.post("/v1/clients", json={"name": "Alice", "email": f"alice-{uid()}@example.com"},
                        headers=alice)
    assert r.status_code == 200, r.text
    client = r.json()["client"]
    _, book = await shop(http)
    r = await http.post("/v1/orders", json={"client_id": client["id"],
                                            "items": [{"product_id": book["id"], "quantity": 1}]},
                        headers=alice)
    assert r.status_code == 200, r.text
    order = r.json()["order"]
    assert order["userId"]
    assert (await http.get(f"/v1/orders/{order['id']}", headers=alice)).status_code == 200
    assert (await http.get(f"/v1/orders/{order['id']}", headers=mallory)).status_code == 403
    assert (await http.post(f"/v1/orders/{order['id']}:cancel", json={}, headers=mallory)).status_code == 403
    await wait_for(lambda: order_status(http, order["id"], "ORDER_STATUS_PAID"), "PAID")
    assert (await http.get(f"/v1/orders/{order['id']}/payment", headers=alice)).status_code == 200
    assert (await http.get(f"/v1/orders/{order['id']}/payment", headers=mallory)).status_code == 403
    r = await http.get("/v1/payments", headers=mallory)
    assert r.status_code == 200 and r.json().get("payments", []) == []
    r = await http.get("/v1/notifications", params={"order_id": order["id"]}, headers=mallory)
    assert r.status_code == 200 and r.json().get("notifications", []) == []
    bad = {"Authorization": "Bearer not-a-session"}
    assert (await http.get(f"/v1/orders/{order['id']}", headers=bad)).status_code == 401


async def _mails(pipeline, address, n):
    found = pipeline.mailbox.to(address)
    return found if len(found) >= n else None


async def _mails_with(pipeline, address, subject):
    return [m for m in pipeline.mailbox.to(address) if m["Subject"] == subject]


async def _sms(pipeline, phone, n):
    found = [s for s in pipeline.sms.sent if s[1] == phone]
    return found if len(found) >= n else None


async def _at_least(items, n):
    return len(items) >= n
