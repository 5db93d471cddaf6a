"""Idle load at the edge: N idle SSE subscribers of one poll's shared WatchResults feed on one bridge
process (`agora up`, embedded backends), against a floor measured in the same run: a bare asyncio
server holding the same N connections and writing one pre-encoded chunk to all of them.

    .venv/bin/python bench/idle_bench.py [--subscribers 10000] [--seconds 10] [--write]

The subscribers are raw sockets in a process of their own (this file with --clients): each sends
the SSE request, reads the response head, then reads nothing more, so the client costs no CPU
while the server writes (the frames of a short run fit in the sockets' kernel buffers; a snapshot
subscriber never falls behind: it gets the latest). Figures, per leg:
  memory         the server's RSS (/proc/<pid>/status VmRSS) with the N subscribers attached, less
                 its RSS before: bytes per subscriber
  idle CPU       the server's CPU (utime+stime, /proc/<pid>/stat) over --seconds with the N
                 subscribers attached and nothing published: keepalives and timers only
  10 Hz feed     a snapshot 10 times a second for --seconds: CPU per delivery. Agora's snapshots
                 come from votes (10 a second on the poll, each changes its results; the feed sends
                 at most the polls server's snapshot rate); the CPU of the same votes with no
                 subscriber, measured first, is taken off, and deliveries are the bridge's own count
                 (agora_edge_feed_deliveries_total). The floor writes its chunk to every connection
                 10 times a second.
--write replaces the "Idle load" section of bench/RESULTS.md.
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
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.edge_bench import cpu_seconds, metric, replace_section, wait_for_metric  # noqa: E402

SECTION = "## Idle load: 10,000 SSE subscribers on one bridge process (bench/idle_bench.py)"
RATE = 10.0  # snapshots per second
VOTES_PER_SECOND = 10.0  # each vote changes the results: a 10 Hz snapshot feed


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- the subscribers' process

async def hold_clients(host: str, port: int, path: str, count: int) -> None:
    """Open `count` SSE requests, read each response's head, print "attached N", then hold them
    without reading until stdin closes."""
    loop = asyncio.get_running_loop()
    request = (f"GET {path} HTTP/1.1\r\nhost: {host}:{port}\r\naccept: text/event-stream\r\n\r\n").encode()
    socks: list[socket.socket] = []
    refused = 0

    async def one() -> None:
        nonlocal refused
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                break
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            refused += 1
            sock.close()
            return
        socks.append(sock)

    for start in range(0, count, 500):  # 500 connecting at a time: the listen backlog is finite
        await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    print(f"attached {len(socks)} refused {refused}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)
    for sock in socks:
        sock.close()


def start_clients(port: int, path: str, count: int) -> subprocess.Popen:
    clients = subprocess.Popen([sys.executable, __file__, "--clients", str(count), "--port", str(port),
                                "--path", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = clients.stdout.readline().split()
    if not line or line[0] != "attached":
        raise RuntimeError(f"the subscribers did not attach: {line}")
    if int(line[1]) != count:
        raise RuntimeError(f"only {line[1]} of {count} subscribers attached ({line[3]} refused)")
    return clients


# -- the floor's server

async def floor_server(port: int, frame_bytes: int, seconds: float) -> None:
    """Answer every request with a chunked event stream; on "go" (stdin), write one pre-encoded
    chunk to every connection RATE times a second for `seconds`, then print "done N"."""
    held: set[asyncio.Transport] = set()
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"

    class Stream(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer = transport, b""

        def data_received(self, data):
            self.buffer += data
            if b"\r\n\r\n" in self.buffer and self.transport not in held:
                self.transport.write(head)
                held.add(self.transport)

        def connection_lost(self, exc):
            held.discard(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stream, "127.0.0.1", port, backlog=4096)
    print("listening", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    data = b"data: " + json.dumps({"pad": "x" * max(0, frame_bytes - 20)}).encode() + b"\n\n"
    chunk = b"%x\r\n" % len(data) + data + b"\r\n"
    sent = 0
    began = time.monotonic()
    for i in range(int(RATE * seconds)):
        await asyncio.sleep(max(0.0, began + i / RATE - time.monotonic()))
        for transport in held:
            transport.write(chunk)
        sent += len(held)
    print(f"done {sent}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    server.close()


def floor_leg(count: int, seconds: float, frame_bytes: int) -> dict[str, float]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, __file__, "--floor-server", str(port), "--frame-bytes",
                               str(frame_bytes), "--seconds", str(seconds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        time.sleep(0.5)
        rss_before = rss_bytes(server.pid)
        clients = start_clients(port, "/", count)
        time.sleep(1.0)
        rss_after = rss_bytes(server.pid)
        idle0 = cpu_seconds(server.pid)
        time.sleep(seconds)
        idle = cpu_seconds(server.pid) - idle0
        busy0 = cpu_seconds(server.pid)
        server.stdin.write("go\n")
        server.stdin.flush()
        sent = int(server.stdout.readline().split()[1])
        busy = cpu_seconds(server.pid) - busy0
        clients.stdin.close()
        clients.wait(timeout=60)
        return {"rss": (rss_after - rss_before) / count, "idle": idle, "cpu": busy, "deliveries": sent}
    finally:
        server.kill()


# -- the Agora leg

async def vote_for(client, poll_id: str, seconds: float) -> None:
    began = time.monotonic()
    for i in range(int(VOTES_PER_SECOND * seconds)):
        await asyncio.sleep(max(0.0, began + i / VOTES_PER_SECOND - time.monotonic()))
        (await client.post(f"/v1/polls/{poll_id}/votes", json={"option": i % 3})).raise_for_status()


async def agora_leg(count: int, seconds: float, work: Path) -> dict[str, float]:
    import httpx

    from tests.ports import free_mesh_ports

    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_BACKENDS": "embedded", "AGORA_LOG_LEVEL": "warning",
           # every subscriber comes from 127.0.0.1: the per-address caps would refuse them
           "AGORA_HTTP_MAX_CONNECTIONS": "0", "AGORA_HTTP_MAX_CONNECTIONS_PER_CLIENT": "0",
           "AGORA_WRITE_RATE": "0"}
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
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as client:
            created = await client.post("/v1/polls", json={"question": "Idle?", "options": ["a", "b", "c"]})
            poll_id = created.raise_for_status().json()["poll"]["id"]
            # The votes alone, before anyone watches: what the 10 Hz phase costs without the fan-out.
            v0 = cpu_seconds(up.pid)
            await vote_for(client, poll_id, seconds)
            votes_alone = cpu_seconds(up.pid) - v0
            await asyncio.sleep(1.0)
            rss_before = rss_bytes(up.pid)
            clients = await asyncio.to_thread(start_clients, http_port, f"/v1/polls/{poll_id}:watch", count)
            await wait_for_metric(client, "agora_edge_feed_subscribers", count, up)
            await asyncio.sleep(1.0)
            rss_after = rss_bytes(up.pid)
            idle0 = cpu_seconds(up.pid)
            await asyncio.sleep(seconds)
            idle = cpu_seconds(up.pid) - idle0
            frame_bytes = await first_frame_bytes(client, f"/v1/polls/{poll_id}:watch")
            d0 = await metric(client, "agora_edge_feed_deliveries_total")
            busy0 = cpu_seconds(up.pid)
            await vote_for(client, poll_id, seconds)
            await asyncio.sleep(0.5)
            busy = cpu_seconds(up.pid) - busy0
            deliveries = await metric(client, "agora_edge_feed_deliveries_total") - d0
            page = (await client.get("/metrics")).text
            direct = sum(float(v) for v in re.findall(
                r'^agora_edge_feed_deliveries_total\{path="direct"\} ([0-9.e+]+)$', page, re.M))
        clients.stdin.close()
        clients.wait(timeout=60)
        return {"rss": (rss_after - rss_before) / count, "idle": idle, "cpu": busy - votes_alone,
                "deliveries": deliveries, "votes_alone": votes_alone, "frame_bytes": frame_bytes,
                "direct": direct}
    finally:
        up.terminate()
        try:
            up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            up.kill()


async def first_frame_bytes(client, path: str) -> int:
    """The size of one SSE event of `path` (the snapshot a newcomer gets)."""
    async with client.stream("GET", path, headers={"accept": "text/event-stream"}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: "):
                return len(line) + 2
    raise RuntimeError(f"{path} sent no event")


def report(agora: dict, floor: dict, args) -> str:
    def per_delivery(leg: dict) -> float:
        return leg["cpu"] / leg["deliveries"] * 1e6 if leg["deliveries"] else float("nan")

    a_us, f_us = per_delivery(agora), per_delivery(floor)
    lines = [
        f"{args.subscribers:,} idle SSE subscribers of one poll's WatchResults feed, {args.seconds:g} s per "
        f"phase; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, this machine (2 cores).",
        "",
        "| figure | floor: bare asyncio server | Agora: `agora up`, one process | ratio |",
        "|---|---:|---:|---:|",
        f"| memory per subscriber (RSS) | {floor['rss'] / 1024:.1f} KiB | {agora['rss'] / 1024:.1f} KiB | "
        f"{agora['rss'] / floor['rss']:.1f}x |",
        f"| idle CPU with every subscriber attached | {floor['idle'] / args.seconds:.3f} cores | "
        f"{agora['idle'] / args.seconds:.3f} cores | |",
        f"| 10 Hz snapshot: deliveries | {floor['deliveries']:,.0f} | {agora['deliveries']:,.0f} | |",
        f"| 10 Hz snapshot: CPU per delivery | {f_us:.1f} µs | {a_us:.1f} µs | {a_us / f_us:.2f}x |",
    ]
    lines += [
        "",
        f"- Agora's 10 Hz figure is the phase's CPU less that of the same votes with no subscriber "
        f"({agora['votes_alone']:.2f} s); the feed's frames are about {agora['frame_bytes']} bytes, the "
        f"floor's chunk the same size.",
        f"- Deliveries written straight to the connection (gateway/direct.py), all phases: "
        f"{agora['direct']:,.0f}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--frame-bytes", type=int, default=300, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        asyncio.run(hold_clients("127.0.0.1", args.port, args.path, args.clients))
        return
    if args.floor_server:
        asyncio.run(floor_server(args.floor_server, args.frame_bytes, args.seconds))
        return
    with tempfile.TemporaryDirectory() as tmp:
        agora = asyncio.run(agora_leg(args.subscribers, args.seconds, Path(tmp)))
        floor = floor_leg(args.subscribers, args.seconds, int(agora["frame_bytes"]))
    text = report(agora, floor, args)
    print(text)
    if args.write:
        replace_section(SECTION, ".venv/bin/python bench/idle_bench.py --write", text)


if __name__ == "__main__":
    main()
