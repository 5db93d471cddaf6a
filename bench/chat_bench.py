"""Chat bench: N WebSocket clients in one room through the bridge, one message per second per 10
clients; p99 delivery delay (send -> frame received by every member) and the server's CPU use,
against baselines measured in the same run (a trivial grpc.aio unary RPC, and the same room
with 10 clients).

    .venv/bin/python bench/chat_bench.py [--clients 1000] [--seconds 20] [--workers 2]
        [--backends embedded|real]

The chat service and the bridge run in one server process (like `agora up`, chat only); the
clients run in `--workers` other processes. CPU is read from /proc for each side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- the server process ----------------------------------------------------------------------


async def serve(backends: str) -> None:
    from gateway.server import make_gateway_server
    from services.chat.service import build
    from services.kit.config import Settings
    from services.kit.server import DomainServer
    from services.mesh.launcher import Runtime

    settings = Settings.from_env(backends=backends, data_dir=Path(tempfile.mkdtemp(prefix="chat-bench-")))
    store = None
    if settings.real:
        from services.chat.stores.postgres import PostgresChatStore

        store = PostgresChatStore(settings.postgres_url, schema=f"chat_bench_{os.getpid()}")
    runtime = Runtime(settings)
    server = DomainServer(await build(runtime, store=store, feed_capacity=4096), host="127.0.0.1", port=0,
                          grace=1.0)
    await server.start()
    descriptors = (ROOT / "clients/python/agora/descriptors.binpb").read_bytes()
    bridge = make_gateway_server(descriptors, {"agora.chat.v1.ChatService": server.address}, port=0)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.ensure_future(bridge.serve(sockets=[sock]))
    while not bridge.started:
        await asyncio.sleep(0.01)
    print(f"READY {sock.getsockname()[1]} {server.port}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    bridge.should_exit = True
    await task
    await server.stop()
    if store is not None:
        await store.drop()
    await runtime.close()


# -- a client worker process -----------------------------------------------------------------


async def clients(http_port: int, count: int, first: int, seconds: float, start_at: float) -> dict:
    import websockets

    delays: list[float] = []
    stats = {"connected": 0, "sent": 0, "closed_early": 0, "rejected": 0}
    ready = asyncio.Event()

    async def member(n: int) -> None:
        url = f"ws://127.0.0.1:{http_port}/v1/rooms/general/chat?username=c{n}"
        async with websockets.connect(url, max_queue=None, ping_interval=None) as ws:
            await ws.send("{}")
            json.loads(await ws.recv())  # joined
            stats["connected"] += 1
            if stats["connected"] == count:
                ready.set()
            sender = n % 10 == 0

            async def talk() -> None:
                await asyncio.sleep(max(0.0, start_at - time.time()) + random.random())
                end = start_at + seconds
                while time.time() < end:
                    await ws.send(json.dumps({"text": repr(time.time())}))
                    stats["sent"] += 1
                    await asyncio.sleep(1.0)

            talker = asyncio.ensure_future(talk()) if sender else None
            deadline = start_at + seconds + 5.0
            try:
                while True:
                    left = deadline - time.time()
                    if left <= 0:
                        break
                    try:
                        raw = await asyncio.wait_for(ws.recv(), left)
                    except asyncio.TimeoutError:
                        break
                    now = time.time()
                    if '"MESSAGE_KIND_MESSAGE"' in raw:
                        frame = json.loads(raw)
                        sent = float(frame["message"]["text"])
                        if sent >= start_at:
                            delays.append(now - sent)
                    elif '"rejected"' in raw:
                        stats["rejected"] += 1
            except websockets.ConnectionClosed:
                stats["closed_early"] += 1
            finally:
                if talker:
                    talker.cancel()

    tasks = []
    for n in range(first, first + count):
        tasks.append(asyncio.ensure_future(member(n)))
        if n % 50 == 0:
            await asyncio.sleep(0.05)  # don't stampede the accept queue
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"delays": delays, **stats}


def worker(http_port: int, count: int, first: int, seconds: float, start_at: float, out) -> None:
    started = time.process_time()
    result = asyncio.run(clients(http_port, count, first, seconds, start_at))
    result["cpu"] = time.process_time() - started
    out.send(result)


def run_room(http_port: int, server_pid: int, n_clients: int, seconds: float, workers: int) -> dict:
    """One measurement: n_clients members, each tenth talking once a second for `seconds`."""
    workers = max(1, min(workers, n_clients))
    setup = 5.0 + n_clients / 100  # time for everyone to connect before the clock starts
    start_at = time.time() + setup
    pipes, procs = [], []
    per = n_clients // workers
    for w in range(workers):
        count = per if w < workers - 1 else n_clients - per * (workers - 1)
        mine, theirs = mp.Pipe(duplex=False)
        proc = mp.Process(target=worker, args=(http_port, count, w * per, seconds, start_at, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, t0 = cpu_seconds(server_pid), time.time()
    time.sleep(seconds)
    cpu1, t1 = cpu_seconds(server_pid), time.time()
    results = [p.recv() for p in pipes]
    for proc in procs:
        proc.join()
    delays = [d for r in results for d in r["delays"]]
    sent = sum(r["sent"] for r in results)
    return {
        "clients": n_clients, "connected": sum(r["connected"] for r in results), "sent": sent,
        "expected": sent * n_clients, "delivered": len(delays),
        "closed_early": sum(r["closed_early"] for r in results),
        "rejected": sum(r["rejected"] for r in results),
        "p50": pct(delays, 0.5), "p99": pct(delays, 0.99), "max": max(delays) if delays else float("nan"),
        "server_cpu": (cpu1 - cpu0) / (t1 - t0),
        "client_cpu": sum(r["cpu"] for r in results) / (seconds + setup + 5),
    }


async def unary_baseline(grpc_port: int, calls: int = 2000) -> tuple[float, float]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        latencies = []
        for _ in range(calls):
            t = time.perf_counter()
            await stub.Check(health_pb2.HealthCheckRequest())
            latencies.append(time.perf_counter() - t)
    return statistics.median(latencies), pct(latencies, 0.99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="embedded", choices=["embedded", "real"])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.backends))
        return 0
    env = {**os.environ, "AGORA_LOG_LEVEL": "WARNING", "AGORA_LOG_FORMAT": "text"}
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--backends", args.backends],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = server.stdout.readline().split()
        assert line and line[0] == "READY", "the bench server did not start"
        http_port, grpc_port = int(line[1]), int(line[2])
        p50_unary, p99_unary = asyncio.run(unary_baseline(grpc_port))
        small = run_room(http_port, server.pid, 10, args.seconds, 1)
        big = run_room(http_port, server.pid, args.clients, args.seconds, args.workers)
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    print(f"baseline grpc.health Check (unary, idle server): p50 {p50_unary * 1e3:.2f} ms, "
          f"p99 {p99_unary * 1e3:.2f} ms")
    print("| members | talkers (1 msg/s) | connected | deliveries expected | delivered | streams ended early "
          "| p50 delay | p99 delay | max | p99 vs unary p99 | server CPU (cores) | client CPU (cores) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in (small, big):
        print(f"| {r['clients']} | {r['clients'] // 10} | {r['connected']} | {r['expected']:,} "
              f"| {r['delivered']:,} | {r['closed_early']} | {r['p50'] * 1e3:.1f} ms "
              f"| {r['p99'] * 1e3:.1f} ms | {r['max'] * 1e3:.0f} ms "
              f"| {r['p99'] / p99_unary:.0f}x | {r['server_cpu']:.2f} | {r['client_cpu']:.2f} |")
    print(f"p99 delay, {args.clients} members vs 10: {big['p99'] / small['p99']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
