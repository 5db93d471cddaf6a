"""The live edge: N WebSocket watchers of one auction through the bridge's shared feed, against a
floor measured in the same run: a bare `websockets` server broadcasting pre-encoded frames of the
same size to the same N clients at the same rate.

    .venv/bin/python bench/edge_bench.py [--watchers 1000] [--rate 10] [--seconds 10] [--write]

Both legs are loaded by k6 (bench/edge_bench.k6.js; `bash tools/install-test-tools.sh` installs it),
whose CPU is not the server's. Server CPU is utime+stime from /proc/<pid>/stat over the broadcast
window: the floor's one process, and `agora up`'s one process (every service and the bridge, on
embedded backends) for the Agora leg. A delivery is one frame received by one watcher; the delay is
frame received - bid accepted (the bid's placed_at), or - the floor frame's send time.
--write replaces the "Live edge" section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

K6_SCRIPT = ROOT / "bench" / "edge_bench.k6.js"
SECTION = "## Live edge: shared feeds (bench/edge_bench.py)"
FRAME_BYTES = 420  # about an auction's bid frame as JSON
GOAL_CPU = 2.0  # issue 20: Agora's server CPU per delivery <= 2x the floor's
GOAL_P99_MS = 100.0
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def tool(name: str) -> str:
    tools = Path(os.environ.get("AGORA_TOOLS", "/opt/agora-tools")) / "bin" / name
    return str(tools) if tools.exists() else name


async def floor_server(port: int, expect: int, rate: float, seconds: float) -> None:
    """The floor: accept `expect` clients, then broadcast one pre-encoded frame `rate` times a second."""
    import websockets

    clients: set = set()
    connected = asyncio.Event()

    async def handler(ws) -> None:
        clients.add(ws)
        if len(clients) >= expect:
            connected.set()
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with websockets.serve(handler, "127.0.0.1", port, max_queue=None, compression=None):
        print("listening", flush=True)
        await connected.wait()
        print("start", flush=True)
        pad = "x" * FRAME_BYTES
        sent = 0
        began = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
            frame = json.dumps({"sequence": i + 1, "sentAt": time.time() * 1000, "pad": pad})
            websockets.broadcast(clients, frame)
            sent += len(clients)
        await asyncio.sleep(1.0)
        print(f"done {sent}", flush=True)
        await asyncio.sleep(seconds + 30)


def start_k6(url: str, sockets: int, hold: float, out: Path) -> subprocess.Popen:
    env = {**os.environ, "URL": url, "SOCKETS": str(sockets), "VUS": str(max(1, sockets // 100)),
           "HOLD": str(hold)}
    return subprocess.Popen([tool("k6"), "run", "--quiet", "--summary-export", str(out), str(K6_SCRIPT)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def k6_figures(summary: Path) -> dict[str, float]:
    metrics = json.loads(summary.read_text())["metrics"]
    delay = metrics.get("frame_delay", {})
    return {"frames": metrics.get("frames", {}).get("count", 0),
            "opened": metrics.get("sockets_open", {}).get("count", 0),
            "closed_early": metrics.get("sockets_closed_early", {}).get("count", 0),
            "p50": delay.get("p(50)", float("nan")), "p99": delay.get("p(99)", float("nan")),
            "max": delay.get("max", float("nan"))}


def floor_leg(watchers: int, rate: float, seconds: float, work: Path) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port), "--watchers",
                               str(watchers), "--rate", str(rate), "--seconds", str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        k6 = start_k6(f"ws://127.0.0.1:{port}/", watchers, seconds + 20, work / "floor.json")
        assert server.stdout.readline().strip() == "start"
        before = cpu_seconds(server.pid)
        done = server.stdout.readline().split()
        after = cpu_seconds(server.pid)
        k6.wait(timeout=seconds + 120)
        figures = k6_figures(work / "floor.json")
        figures.update(cpu=after - before, sent=int(done[1]))
        return figures
    finally:
        server.kill()


async def agora_leg(watchers: int, rate: float, seconds: float, work: Path) -> dict[str, float]:
    import httpx

    from tests.ports import free_mesh_ports

    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_BACKENDS": "embedded", "AGORA_LOG_LEVEL": "warning"}
    log_path = work / "up.log"
    with open(log_path, "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "agora.cli", "up", "--data-dir", str(work / "data")],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while "ready" not in log_path.read_text():
            if up.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"agora up did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        base = f"http://127.0.0.1:{http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            seller = {"authorization": f"Bearer {await session(client, 'seller')}"}
            auth = {"authorization": f"Bearer {await session(client, 'bidder')}"}
            end = (datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat().replace("+00:00", "Z")
            created = await client.post("/v1/auctions", headers=seller, json={
                "productName": "lamp", "startingPrice": {"currencyCode": "USD", "amountMinor": "100"},
                "minIncrement": {"currencyCode": "USD", "amountMinor": "1"}, "auctionEnd": end})
            auction = created.raise_for_status().json()["auction"]["id"]
            k6 = start_k6(f"ws://127.0.0.1:{http_port}/v1/auctions/{auction}:watch", watchers, seconds + 25,
                          work / "agora.json")
            await wait_for_metric(client, "agora_edge_feed_subscribers", watchers, up, k6)
            before = cpu_seconds(up.pid)
            began = time.monotonic()
            amount = 100
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
                amount += 10
                (await client.post(f"/v1/auctions/{auction}/bids", headers=auth, json={
                    "amount": {"currencyCode": "USD", "amountMinor": str(amount)}})).raise_for_status()
            await asyncio.sleep(1.0)
            after = cpu_seconds(up.pid)
            upstream = await metric(client, "agora_edge_feed_upstream_calls_total")
        k6.wait(timeout=seconds + 120)
        figures = k6_figures(work / "agora.json")
        figures.update(cpu=after - before, sent=int(rate * seconds) * watchers, upstream_calls=upstream)
        return figures
    finally:
        up.terminate()
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


async def session(client, role: str) -> str:
    """A fresh account's session token (the seller may not bid on its own auction)."""
    name, password = f"{role}{int(time.time())}", "correct horse battery"
    (await client.post("/v1/users", json={"userName": name, "email": f"{name}@example.test",
                                          "password": password})).raise_for_status()
    login = await client.post("/v1/auth/login", json={"userName": name, "password": password})
    client.cookies.clear()  # the bearer token is used; a session cookie would ask writes for CSRF
    return login.raise_for_status().json()["sessionToken"]


async def metric(client, name: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


async def wait_for_metric(client, name: str, value: float, *processes: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while await metric(client, name) < value:
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"a process ended before {name} reached {value}: "
                                   f"{(p.stderr.read() if p.stderr else '')[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not reach {value} in 120 s")
        await asyncio.sleep(0.5)


def report(floor: dict, agora: dict, args) -> str:
    def per_delivery(leg: dict) -> float:
        return leg["cpu"] / leg["frames"] * 1e6 if leg["frames"] else float("nan")

    f_us, a_us = per_delivery(floor), per_delivery(agora)
    ratio = a_us / f_us if f_us else float("nan")
    lines = [
        f"{args.watchers} WebSocket watchers, {args.rate:g} frames/s for {args.seconds:g} s "
        f"({int(args.rate * args.seconds) * args.watchers:,} deliveries expected per leg), k6 "
        f"{max(1, args.watchers // 100)} VUs; {datetime.now(timezone.utc):%Y-%m-%d}, this machine (2 cores).",
        "",
        "| leg | delivered | p50 | p99 | max | server CPU | CPU per delivery |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, leg in (("floor: `websockets.broadcast` of pre-encoded frames", floor),
                       ("Agora: bid via REST → shared WatchAuction feed → WebSocket", agora)):
        lines.append(f"| {label} | {leg['frames']:,.0f} / {leg['sent']:,} | {leg['p50']:.1f} ms | "
                     f"{leg['p99']:.1f} ms | {leg['max']:.0f} ms | {leg['cpu']:.2f} s | "
                     f"{per_delivery(leg):.1f} µs |")
    lines += [
        "",
        f"- CPU per delivery: Agora / floor = **{ratio:.2f}x** (goal ≤ {GOAL_CPU:g}x: "
        f"{'met' if ratio <= GOAL_CPU else 'not met'}); Agora p99 bid → frame {agora['p99']:.1f} ms (goal < "
        f"{GOAL_P99_MS:g} ms: {'met' if agora['p99'] < GOAL_P99_MS else 'not met'}).",
        f"- Upstream calls the bridge's feeds opened for {args.watchers} watchers: "
        f"{agora.get('upstream_calls', 0):.0f}.",
        f"- Sockets closed before their time: floor {floor['closed_early']:.0f}, "
        f"Agora {agora['closed_early']:.0f}.",
    ]
    return "\n".join(lines)


def replace_section(section: str, command: str, text: str) -> None:
    """Put `text` under `section` in bench/RESULTS.md (replacing what was there), with its command."""
    path = ROOT / "bench" / "RESULTS.md"
    doc = path.read_text()
    body = f"{section}\n\nCommand: `{command}`.\n\n{text}\n"
    if section in doc:
        start = doc.index(section)
        nxt = doc.find("\n## ", start + len(section))
        doc = doc[:start] + body + (doc[nxt:] if nxt != -1 else "")
    else:
        doc = doc.rstrip() + "\n\n" + body
    path.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="frames (bids) per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        asyncio.run(floor_server(args.floor_server, args.watchers, args.rate, args.seconds))
        return
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        work = Path(tmp)
        floor = floor_leg(args.watchers, args.rate, args.seconds, work)
        agora = asyncio.run(agora_leg(args.watchers, args.rate, args.seconds, work))
    text = report(floor, agora, args)
    print(text)
    if args.write:
        replace_section(SECTION, ".venv/bin/python bench/edge_bench.py --write", text)


if __name__ == "__main__":
    main()
