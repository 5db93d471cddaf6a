"""Auctions bench: bids/s on one hot auction and across 100 auctions, and the bid-to-subscriber delay
with 1,000 watchers, each against a trivial grpc.aio unary RPC (health Check) measured in the same run.

    .venv/bin/python bench/auctions_bench.py [--backends embedded|real] [--bids 2000] [--watchers 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc
from agora.auctions.v1 import auctions_pb2 as apb
from agora.auctions.v1 import auctions_pb2_grpc
from agora.common.v1.money_pb2 import Money
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services.identity.harness import bearer, create_auction, sign_up_and_login, start_mesh, stop_mesh

CONCURRENCY = 32


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def baseline(channel: grpc.aio.Channel, calls: int) -> tuple[float, float]:
    """(calls/s, p50 latency s) of grpc.health.v1 Check with CONCURRENCY in flight."""
    stub = health_pb2_grpc.HealthStub(channel)
    latencies: list[float] = []
    counter = itertools.count()

    async def worker() -> None:
        while next(counter) < calls:
            t = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest())
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return calls / (time.perf_counter() - started), statistics.median(latencies)


async def bidding(stub, tokens: list[str], auctions: list[apb.Auction], attempts: int) -> tuple[float, float]:
    """(accepted bids/s, attempted bids/s): CONCURRENCY workers bid ever-higher amounts, round robin
    over `auctions`; racing bids that end up too low are refused (and counted as attempts only)."""
    counters = {a.id: itertools.count(1) for a in auctions}
    sent = itertools.count()
    accepted = 0

    async def worker(n: int) -> None:
        nonlocal accepted
        token = tokens[n % len(tokens)]
        while (i := next(sent)) < attempts:
            auction = auctions[i % len(auctions)]
            amount = 1000 + 10 * next(counters[auction.id])
            try:
                await stub.PlaceBid(apb.PlaceBidRequest(
                    auction_id=auction.id, amount=Money(currency_code="USD", amount_minor=amount)),
                    metadata=bearer(token))
                accepted += 1
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in (grpc.StatusCode.ABORTED, grpc.StatusCode.FAILED_PRECONDITION):
                    raise

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    return accepted / elapsed, attempts / elapsed


async def fan_out(address: str, stub, token: str, auction: apb.Auction, watchers: int,
                  bids: int) -> list[float]:
    """Delays (s) from PlaceBid being sent to each watcher receiving that bid, over `watchers` streams."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(max(1, watchers // 100))]
    sent_at: dict[int, float] = {}
    delays: list[float] = []
    ready = 0
    all_ready = asyncio.Event()

    async def watch(channel) -> None:
        nonlocal ready
        watcher = auctions_pb2_grpc.AuctionServiceStub(channel)
        seen = 0
        async for frame in watcher.WatchAuction(apb.WatchAuctionRequest(auction_id=auction.id)):
            if frame.HasField("snapshot"):
                ready += 1
                if ready == watchers:
                    all_ready.set()
                continue
            now = time.perf_counter()
            delays.append(now - sent_at[frame.sequence])
            seen += 1
            if seen == bids:
                return

    tasks = [asyncio.ensure_future(watch(channels[i % len(channels)])) for i in range(watchers)]
    await asyncio.wait_for(all_ready.wait(), 120)
    for i in range(bids):
        sent_at[i + 1] = time.perf_counter()
        await stub.PlaceBid(apb.PlaceBidRequest(
            auction_id=auction.id, amount=Money(currency_code="USD", amount_minor=1000 + 10 * i)),
            metadata=bearer(token))
        await asyncio.sleep(0.02)  # a lively auction, not a flood: this measures delay, not throughput
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    for channel in channels:
        await channel.close()
    return delays


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="embedded", choices=["embedded", "real"])
    parser.add_argument("--bids", type=int, default=2000)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--watched-bids", type=int, default=50)
    args = parser.parse_args()
    import logging

    logging.disable(logging.INFO)  # the access log would dominate the figures
    from services.kit.config import Settings

    settings = Settings.from_env()
    mesh = await start_mesh(args.backends, Path(tempfile.mkdtemp()), gateway=False,
                            postgres_url=settings.postgres_url, amqp_url=settings.amqp_url)
    try:
        async with mesh.channel("identity") as ich, mesh.channel() as ach:
            _, _, seller = await sign_up_and_login(ich)
            tokens = [(await sign_up_and_login(ich))[2] for _ in range(8)]
            stub = auctions_pb2_grpc.AuctionServiceStub(ach)
            base_rate, base_p50 = await baseline(ach, args.bids)
            hot = [await create_auction(ach, seller, seconds=3600, start=1000)]
            hot_ok, hot_try = await bidding(stub, tokens, hot, args.bids)
            many = [await create_auction(ach, seller, seconds=3600, start=1000) for _ in range(100)]
            many_ok, many_try = await bidding(stub, tokens, many, args.bids)
            watched = await create_auction(ach, seller, seconds=3600, start=1000)
            delays = await fan_out(mesh.auctions.address, stub, tokens[0], watched, args.watchers,
                                   args.watched_bids)
    finally:
        await stop_mesh(mesh)

    print(f"backends: {args.backends}; {CONCURRENCY} concurrent clients; {args.bids} bid attempts per run")
    print("| measure | value | vs baseline |")
    print("|---|---:|---:|")
    print(f"| baseline: health Check unary RPC | {base_rate:,.0f} calls/s, p50 {base_p50 * 1000:.2f} ms | "
          "1.00x |")
    print(f"| one hot auction: accepted bids/s | {hot_ok:,.0f} (of {hot_try:,.0f} attempts/s) | "
          f"{hot_ok / base_rate:.3f}x |")
    print(f"| 100 auctions: accepted bids/s | {many_ok:,.0f} (of {many_try:,.0f} attempts/s) | "
          f"{many_ok / base_rate:.3f}x |")
    p50, p99 = pct(delays, 0.5), pct(delays, 0.99)
    print(f"| bid-to-subscriber delay, {args.watchers} watchers, {args.watched_bids} bids | "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({len(delays):,} deliveries) | "
          f"p99 = {p99 / base_p50:.0f}x baseline p50 |")


if __name__ == "__main__":
    asyncio.run(main())
