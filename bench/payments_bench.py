"""Payments bench: orders/s from placement (POST /api/orders through the bridge) to PAID (orders
consumed payments.payment.succeeded), and placement-to-PAID latency (p50/p99), against a trivial
grpc.aio unary RPC (health Check) measured in the same run. The whole pipeline runs: identity,
customers, catalog, orders, payments, notifications (to a local SMTP server), audit.

    .venv/bin/python bench/payments_bench.py [--backends real|embedded] [--orders 300]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
import httpx
from agora.orders.v1 import orders_pb2, orders_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services.orders import commerce as harness
from tests.services.payments import pipeline as harness_pipeline

CONCURRENCY = 16


async def baseline(target: str, calls: int) -> float:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        counter = itertools.count()

        async def worker():
            while next(counter) < calls:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return calls / (time.perf_counter() - start)


async def placement_to_paid(p, http: httpx.AsyncClient, orders: int) -> tuple[float, list[float]]:
    tag = uuid.uuid4().hex[:8]
    client = (await http.post("/api/clients", json={"name": "Bench",
                                                    "email": f"bench-{tag}@example.com"})).json()
    seller = (await http.post("/api/sellers", json={"name": "Shop",
                                                    "email": f"shop-{tag}@example.com"})).json()
    product = (await http.post("/api/products", json={
        "seller_id": seller["id"], "name": "Item", "stock": orders,
        "price": {"currency_code": "USD", "amount_minor": "999"}})).json()
    latencies: list[float] = []
    watchers: list[asyncio.Task] = []
    counter = itertools.count()
    async with grpc.aio.insecure_channel(p.target("orders")) as channel:
        stub = orders_pb2_grpc.OrderServiceStub(channel)

        async def until_paid(order_id: str, placed: float) -> float:
            async for m in stub.WatchOrder(orders_pb2.WatchOrderRequest(order_id=order_id), timeout=120):
                if m.change.status == orders_pb2.ORDER_STATUS_PAID:
                    now = time.perf_counter()
                    latencies.append(now - placed)
                    return now
                if m.change.status != orders_pb2.ORDER_STATUS_PENDING:
                    raise RuntimeError(f"order {order_id} ended {m.change.status}")
            raise RuntimeError(f"order {order_id}: stream ended before PAID")

        async def worker():
            while next(counter) < orders:
                placed = time.perf_counter()
                r = await http.post("/api/orders", json={
                    "client_id": client["id"], "card_token": "tok_ok",
                    "items": [{"product_id": product["id"], "quantity": 1}]})
                r.raise_for_status()
                watchers.append(asyncio.create_task(until_paid(r.json()["id"], placed)))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        ends = await asyncio.gather(*watchers)
    return orders / (max(ends) - start), latencies


async def main(backends: str, orders: int) -> None:
    run_id = harness.new_run_id()
    harness.unique_names(setattr, run_id)
    with tempfile.TemporaryDirectory() as data_dir:
        p = await harness_pipeline.start(backends, Path(data_dir), run_id)
        try:
            async with httpx.AsyncClient(base_url=p.base_url, timeout=60.0) as http:
                await placement_to_paid(p, http, 20)  # warm up: channels, prepared statements, queues
                rpc = await baseline(p.target("orders"), 3000)
                rate, latencies = await placement_to_paid(p, http, orders)
        finally:
            await harness_pipeline.stop(p)
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"backends={backends} orders={orders} concurrency={CONCURRENCY}")
    print(f"baseline grpc.aio unary (health Check): {rpc:,.0f} calls/s")
    print(f"placement -> PAID: {rate:,.1f} orders/s  (ratio to baseline {rate / rpc:.4f})")
    print(f"placement -> PAID latency: p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms  (p99 = {p99 * rpc:,.0f} baseline calls' worth)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="real", choices=["real", "embedded"])
    parser.add_argument("--orders", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.backends, args.orders))
