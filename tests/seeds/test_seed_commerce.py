"""Seeds 002 and 004 (the distributed shop and the three-database shop): their README routes, decoded as
their frameworks decode (FastAPI/pydantic and Go's encoding/json ignore unknown JSON fields), while
Agora's own `/v1` routes stay strict; `/health` and `/docs` answer as they did.
"""

from __future__ import annotations

import uuid

import httpx
import pytest


@pytest.fixture
async def http(mesh):
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as client:
        yield client


def uid() -> str:
    return uuid.uuid4().hex[:8]


async def test_unknown_fields_are_ignored_on_the_seed_routes(http):
    client = await http.post("/api/clients", json={"name": "Ada", "email": f"ada-{uid()}@example.com",
                                                   "loyalty_tier": "gold", "created_by": "frontend"})
    assert client.status_code == 200, client.text
    seller = await http.post("/api/sellers", json={"name": "Shop", "email": f"shop-{uid()}@example.com",
                                                   "rating": 5})
    assert seller.status_code == 200, seller.text
    product = await http.post("/api/products", json={
        "seller_id": seller.json()["id"], "name": "Pen", "stock": 5, "sku": "PEN-1",
        "price": {"currency_code": "USD", "amount_minor": "150", "display": "$1.50"}})
    assert product.status_code == 200, product.text
    order = await http.post("/api/orders", json={
        "client_id": client.json()["id"], "coupon": "none",
        "items": [{"product_id": product.json()["id"], "quantity": 1, "gift_wrap": False}]})
    assert order.status_code == 200, order.text
    logged = await http.post("/api/log/event", json={"type": "web.visit", "key": uid(), "user_agent": "x"})
    assert logged.status_code == 200, logged.text
    listed = await http.get("/api/orders", params={"page_size": 5, "utm_source": "mail"})
    assert listed.status_code == 200, listed.text


async def test_agoras_own_routes_stay_strict(http):
    strict = await http.post("/v1/clients", json={"client": {"name": "Bo", "email": f"bo-{uid()}@example.com",
                                                             "loyalty_tier": "gold"}})
    assert strict.status_code == 400 and strict.json()["code"] == 3  # INVALID_ARGUMENT


async def test_health_and_docs(http):
    health = await http.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "SERVING"
    docs = await http.get("/docs/")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = (await http.get("/openapi.json")).json()
    assert "201" in spec["paths"]["/api/v1/users/signupuser"]["post"]["responses"]


async def test_seed_002_flow_ends_with_the_email_in_the_embedded_mail_sink(http, mesh):
    """Seed 002's whole flow under `agora up`: the order is paid and its client gets the e-mail, kept
    by the embedded mail sink (no SMTP relay runs) and readable with `agora mail list|show`."""
    import asyncio
    import json
    import subprocess

    from tests.meshproc import AGORA, ROOT

    email = f"mail-{uid()}@example.com"
    client = await http.post("/api/clients", json={"name": "Grace", "email": email})
    seller = await http.post("/api/sellers", json={"name": "Shop", "email": f"shop-{uid()}@example.com"})
    product = await http.post("/api/products", json={
        "seller_id": seller.json()["id"], "name": "Lamp", "stock": 3,
        "price": {"currency_code": "USD", "amount_minor": "2500"}})
    assert product.status_code == 200, product.text
    order = await http.post("/api/orders", json={"client_id": client.json()["id"], "items": [
        {"product_id": product.json()["id"], "quantity": 1}]})
    assert order.status_code == 200, order.text

    def mail(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*AGORA, "mail", "--data-dir", str(mesh.up.data), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=30)

    mine: list[dict] = []
    for _ in range(60):  # the flow is asynchronous: placed -> reserved -> paid -> notified
        listed = mail("list", "--json")
        assert listed.returncode == 0, listed.stderr
        mine = [row for row in map(json.loads, listed.stdout.splitlines()) if row["to"] == email]
        if mine:
            break
        await asyncio.sleep(0.5)
    assert mine, f"no e-mail to {email} in the mail sink; log: {mesh.up.log.read_text()[-2000:]}"
    shown = mail("show", mine[0]["id"])
    assert shown.returncode == 0, shown.stderr
    assert f"To: {email}" in shown.stdout and order.json()["id"] in shown.stdout
    assert mail("show", "no-such-id").returncode == 1
