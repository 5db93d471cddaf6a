"""The whole order pipeline (tests/services/payments/pipeline.py: bridge, identity, customers, catalog,
orders, payments, notifications, audit, SMTP) once per module, embedded and on real servers, with
tracing into an in-memory exporter for as long as the module runs."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.kit.telemetry import tracing


@pytest.fixture(scope="module")
def exporter():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.uninstall()
        provider.shutdown()


@pytest.fixture(scope="module", params=["embedded", "real"])
async def pipeline(request, exporter, tmp_path_factory):
    from tests.services.orders import commerce as harness
    from tests.services.payments import pipeline as harness_pipeline

    patcher = pytest.MonkeyPatch()
    run_id = harness.new_run_id()
    harness.unique_names(patcher.setattr, run_id)
    if request.param == "real":
        from tests.realservers import require

        for server in ("postgres", "mongodb", "cassandra", "rabbitmq"):
            require(server)
    p = await harness_pipeline.start(request.param, tmp_path_factory.mktemp("observability"), run_id)
    try:
        yield p
    finally:
        await harness_pipeline.stop(p)
        patcher.undo()


@pytest.fixture
async def http(pipeline):
    import httpx

    # The pipeline is watched as an operator does, with the mesh's service credential.
    headers = {"x-api-key": pipeline.mesh.runtime.settings.service_api_key}
    async with httpx.AsyncClient(base_url=pipeline.base_url, timeout=30.0, headers=headers) as client:
        yield client


async def shop(http, tag: str) -> tuple[dict, dict]:
    """A client with an e-mail address, and a product in stock."""
    client = (await http.post("/api/clients", json={"name": "Ada", "email": f"ada-{tag}@example.com"})).json()
    seller = (await http.post("/api/sellers", json={"name": "Shop",
                                                    "email": f"shop-{tag}@example.com"})).json()
    r = await http.post("/api/products", json={"seller_id": seller["id"], "name": "Blue book", "stock": 5,
                                               "price": {"currency_code": "USD", "amount_minor": "2500"}})
    assert r.status_code == 200, r.text
    return client, r.json()


async def place_order(http, client: dict, product: dict, headers=None) -> dict:
    r = await http.post("/api/orders", json={"client_id": client["id"], "card_token": "tok_ok",
                                             "items": [{"product_id": product["id"], "quantity": 1}]},
                        headers=headers)
    assert r.status_code == 200, r.text
    return r


async def paid(http, order_id: str):
    r = await http.get(f"/api/orders/{order_id}")
    return r.status_code == 200 and r.json()["status"] == "ORDER_STATUS_PAID"
