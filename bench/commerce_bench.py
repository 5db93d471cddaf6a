"""Commerce bench: orders/s through the bridge (REST, CreateOrder checks client + product and
reserves stock over gRPC) and audit ingest events/s (bus -> audit store -> live stream), each
against a trivial grpc.aio unary RPC (health Check) measured in the same run.

    .venv/bin/python bench/commerce_bench.py [--backends real|embedded] [--orders 400] [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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
from agora.audit.v1 import audit_pb2, audit_pb2_grpc
from agora.events.v1.customers_pb2 import ClientCreated
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.bus import new_envelope
from services.kit.config import Settings
from tests.services.orders import commerce as harness

CONCURRENCY = 16


async def baseline(target: str, calls: int) -> float:
    """calls/s of grpc.health.v1 Check with CONCURRENCY in flight."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        counter = itertools.count()

        async def worker():
            while next(counter) < calls:
                await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return calls / (time.perf_counter() - start)


async def orders_per_second(http: httpx.AsyncClient, orders: int) -> tuple[float, float]:
    """(orders/s, p50 latency s) of POST /api/orders with CONCURRENCY in flight, one line each."""
    tag = uuid.uuid4().hex[:8]
    client = (await http.post("/api/clients", json={"name": "Bench",
                                                    "email": f"bench-{tag}@example.com"})).json()
    seller = (await http.post("/api/sellers", json={"name": "Bench shop",
                                                    "email": f"shop-{tag}@example.com"})).json()
    products = [(await http.post("/api/products", json={
        "seller_id": seller["id"], "name": f"Item {i}", "stock": orders,
        "price": {"currency_code": "USD", "amount_minor": "999"}})).json()["id"] for i in range(4)]
    counter = itertools.count()
    latencies: list[float] = []

    async def worker():
        while (n := next(counter)) < orders:
            t = time.perf_counter()
            r = await http.post("/api/orders", json={"client_id": client["id"], "items": [
                {"product_id": products[n % len(products)], "quantity": 1}]})
            r.raise_for_status()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return orders / (time.perf_counter() - start), statistics.median(latencies)


async def audit_ingest(mesh, events: int) -> float:
    """events/s from publishing on the bus until audit's live stream has delivered the last one."""
    bus = await mesh.runtime.bus()
    kind = f"bench.ingest_{uuid.uuid4().hex[:6]}.done"
    got = 0
    done = asyncio.Event()
    ready = asyncio.Event()

    async def watch():
        nonlocal got
        async with grpc.aio.insecure_channel(mesh.target("audit")) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            call = stub.WatchEvents(audit_pb2.WatchEventsRequest(type_pattern=kind))
            ready.set()
            async for _ in call:
                got += 1
                if got >= events:
                    done.set()
                    return

    watcher = asyncio.create_task(watch())
    await ready.wait()
    await asyncio.sleep(0.3)
    envelopes = [new_envelope(kind, "bench", f"k{i % 50}", ClientCreated(client_id=str(i)))
                 for i in range(events)]
    start = time.perf_counter()
    for i in range(0, events, 250):
        await bus.publish(envelopes[i:i + 250])
    await asyncio.wait_for(done.wait(), 600)
    elapsed = time.perf_counter() - start
    watcher.cancel()
    return events / elapsed


async def main(args) -> None:
    run_id = harness.new_run_id()
    import pytest

    patcher = pytest.MonkeyPatch()
    harness.unique_names(patcher.setattr, run_id)
    base = Settings.from_env(log_level="WARNING")
    if args.backends == "real":
        settings = harness.real_settings(base, run_id)
    else:
        settings = dataclasses.replace(base, backends="embedded", data_dir=Path(tempfile.mkdtemp()))
    import logging

    logging.disable(logging.INFO)
    mesh = await harness.start(settings)
    try:
        async with httpx.AsyncClient(base_url=mesh.base_url, timeout=60,
                                     limits=httpx.Limits(max_connections=CONCURRENCY)) as http:
            await orders_per_second(http, 40)  # warm up
            base_rps = await baseline(mesh.target("orders"), args.orders * 5)
            rate, p50 = await orders_per_second(http, args.orders)
            ingest = await audit_ingest(mesh, args.events)
    finally:
        await harness.stop(mesh)
        if args.backends == "real":
            await harness.drop_real(settings, run_id)
        patcher.undo()
    print(f"backends: {args.backends}; concurrency {CONCURRENCY}")
    print(f"baseline grpc health Check: {base_rps:,.0f} calls/s")
    print(f"orders through the bridge:  {rate:,.1f} orders/s (p50 {p50 * 1000:.1f} ms) = "
          f"{rate / base_rps:.3f}x baseline")
    print(f"audit ingest (bus -> store -> live stream): {ingest:,.0f} events/s = "
          f"{ingest / base_rps:.3f}x baseline")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="real", choices=["real", "embedded"])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--events", type=int, default=2000)
    asyncio.run(main(parser.parse_args()))
