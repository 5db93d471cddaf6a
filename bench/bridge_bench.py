"""The same unary RPC direct over gRPC and through the bridge, same concurrency, one run: the ratio.

    .venv/bin/python bench/bridge_bench.py [--concurrency 64] [--seconds 5] [--rounds 3] [--loop uvloop]
        [--write]

Every role runs in its own process (gRPC server, bridge, load generator) on this machine. The
direct load comes from a grpc.aio client; the bridge load from wrk (HTTP/1.1 keep-alive).
--write replaces the "Bridge vs direct gRPC" section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RPC_PATH = "/agora.testing.v1.Mirror/GetSample"
HTTP_PATH = "/v1/samples/abc"
SECTION = "## Bridge vs direct gRPC (bench/bridge_bench.py)"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descriptor_set() -> bytes:
    from tests.gateway.mirror_server import compile_descriptor_set

    return compile_descriptor_set(Path(tempfile.mkdtemp()))


# -- roles, each in its own process


async def role_server(port: int) -> None:
    import grpc

    from tests.gateway.mirror_server import Messages, MirrorService

    service = MirrorService(Messages(descriptor_set()))
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def role_bridge(port: int, upstream: str) -> None:
    from gateway.server import serve_gateway

    ready = asyncio.Event()
    task = asyncio.ensure_future(
        serve_gateway(descriptor_set(), {"*": upstream}, "127.0.0.1", port, ready_event=ready)
    )
    await ready.wait()
    print("ready", flush=True)
    await task


async def role_grpc_client(target: str, concurrency: int, seconds: float) -> None:
    import grpc

    from tests.gateway.mirror_server import Messages

    messages = Messages(descriptor_set())
    request = messages.Sample(name="abc")
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(
            RPC_PATH, request_serializer=messages.Sample.SerializeToString,
            response_deserializer=messages.Sample.FromString,
        )
        for _ in range(200):  # warm-up
            await call(request)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                await call(request)
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    print(json.dumps({
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "requests": len(latencies),
    }))


# -- orchestration


def start(args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc


def wrk(url: str, concurrency: int, seconds: float) -> dict:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk not found: apt-get install -y wrk")
    subprocess.run([binary, "-t1", "-c16", "-d2s", url], capture_output=True, check=True)  # warm-up
    out = subprocess.run(
        [binary, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99"),
            "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each leg")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the figures into bench/RESULTS.md")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop for the bridge process (uvloop is what `agora up` would pick)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.role == "server":
        asyncio.run(role_server(args.port))
        return
    if args.role == "bridge":
        if args.loop == "uvloop":
            import uvloop

            uvloop.run(role_bridge(args.port, args.upstream))
        else:
            asyncio.run(role_bridge(args.port, args.upstream))
        return
    if args.role == "grpc-client":
        asyncio.run(role_grpc_client(args.upstream, args.concurrency, args.seconds))
        return

    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    procs = [start(["--role", "server", "--port", str(grpc_port)])]
    try:
        procs.append(
            start(["--role", "bridge", "--port", str(http_port), "--upstream", target, "--loop", args.loop])
        )
        rounds = []
        # Alternate short direct and bridge legs: load from other processes on the machine then hits
        # both sides alike, and the median of the per-round ratios is what we report.
        for _ in range(args.rounds):
            direct_out = subprocess.run(
                [sys.executable, __file__, "--role", "grpc-client", "--upstream", target,
                 "--concurrency", str(args.concurrency), "--seconds", str(args.seconds)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            ).stdout
            direct = json.loads(direct_out.strip().splitlines()[-1])
            bridge = wrk(f"http://127.0.0.1:{http_port}{HTTP_PATH}", args.concurrency, args.seconds)
            rounds.append((direct, bridge))
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
    ratios = sorted(b["rps"] / d["rps"] for d, b in rounds)
    ratio = statistics.median(ratios)
    command = (
        f"python bench/bridge_bench.py --concurrency {args.concurrency} --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --loop {args.loop}"
    )
    rows = "".join(
        f"| {i} | {d['rps']:.0f} | {d['p50_ms']:.2f} | {d['p99_ms']:.2f} "
        f"| {b['rps']:.0f} | {b['p50_ms']:.2f} | {b['p99_ms']:.2f} | {b['rps'] / d['rps']:.2f}x |\n"
        for i, (d, b) in enumerate(rounds, 1)
    )
    non_2xx = sum(b["non_2xx"] for _, b in rounds)
    report = (
        f"{SECTION}\n\n"
        f"Command: `{command}` ({os.cpu_count()} cores; gRPC server, bridge and load generator each in their "
        "own process). Same unary RPC (`Mirror.GetSample`; `GET /v1/samples/abc` through the bridge), "
        f"{args.concurrency} in flight; {args.rounds} rounds alternating a {args.seconds:g} s direct leg "
        f"and a {args.seconds:g} s bridge leg in one run; bridge event loop: {args.loop}. "
        "Direct load: a grpc.aio client; bridge load: wrk (HTTP/1.1 keep-alive).\n\n"
        "| round | direct req/s | direct p50 ms | direct p99 ms | bridge req/s | bridge p50 ms "
        "| bridge p99 ms | ratio |\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"{rows}\n"
        f"Bridge / direct throughput, median of rounds: **{ratio:.2f}x** (target >= 0.5x). "
        f"Non-2xx through the bridge: {non_2xx}.\n"
    )
    print(report)
    if args.write:
        path = ROOT / "bench" / "RESULTS.md"
        text = path.read_text()
        start_at = text.index(SECTION)
        nxt = text.find("\n## ", start_at + len(SECTION))
        tail = text[nxt:] if nxt != -1 else "\n"
        path.write_text(text[:start_at] + report + tail)


if __name__ == "__main__":
    main()
