"""Live polls at the edge: votes through the seed route `POST /vote/{id}/{option}` into a mesh on real
PostgreSQL, MongoDB and RabbitMQ, tallies caught up, while WatchResults watchers follow the poll through
the bridge's shared feed; and the direct-gRPC batch path (CastVotes), against floors of the same run.

    source /tmp/agora-data/env.sh      # the real servers (deployments/local/services.sh)
    .venv/bin/python bench/polls_edge_bench.py [--watchers 1000] [--seconds 20] [--connections 64] [--write]

The mesh is what the README tells a user to run on one machine, `agora up --backends real` (every
service, the tally consumer and the bridge in one process), with two settings of the bridge relaxed
because all the load comes from one address here: AGORA_WRITE_RATE=0 (the per-address write limit)
and AGORA_HTTP_MAX_CONNECTIONS_PER_CLIENT=0 (1,000 watchers and the voters' connections share
127.0.0.1). The load generators are compiled and their CPU is not the server's: wrk (HTTP/1.1
keep-alive, a Lua script cycling the four options) for the votes and the HTTP floor; k6 for the
watchers (bench/polls_edge_bench.k6.js); a grpc.aio client in this process only for CastVotes.

The watchers use the WebSocket transport of `GET /v1/polls/{poll_id}:watch`, not SSE: stock k6's http
module hands a response over only once its body has ended, so it cannot read an endless SSE stream
frame by frame (that takes the xk6-sse extension, i.e. a custom k6 build). The WebSocket and SSE
subscribers of one poll are the same shared SNAPSHOT feed at the bridge (gateway/feeds.py: one
upstream WatchResults call, each snapshot encoded once per transport), so only the per-transport
encoding and framing differ.

Legs, in order:
  watcher floor  edge_bench.py's floor_leg: a bare `websockets` server broadcasting pre-encoded frames
                 to the same number of k6 watchers at 10 frames/s (the feed's coalescing rate)
  HTTP floor     the same wrk load (connections, threads, seconds, script) on the bridge's `GET /livez`
  votes          a poll (VOTE_POLICY_UNRESTRICTED, as the seed's polls are); the watchers connect; a
                 2 s warm-up; then wrk for --seconds; then the tally is read (GetPoll over gRPC)
                 until it counts every vote the bridge answered 200; then the poll is closed and every
                 watcher must get its final frame
  CastVotes      --batch-concurrency calls in flight of CastVotes with --batch votes each, straight to
                 the mesh's polls gRPC port, for --seconds, tallies caught up (no watchers)

Figures:
  accepted       the bridge's own count of 200 answers to CastVote during the run (/metrics:
                 agora_http_request_duration_seconds_count{route=...CastVote,status="200"}); wrk's
                 count misses the answers in flight when it stops, and is shown beside it
  counted        the poll's total_votes (GetPoll) once it reaches `accepted` or stops moving for 10 s,
                 less the total before the run; exact = counted == accepted
  votes/s        counted / (from wrk's start until the tally counted the last one): exact votes per
                 second with the tallies caught up
  batch size     mean of agora_bridge_batch_size{method="agora.polls.v1.PollService.CastVotes"} over
                 the run: how many seed-route calls the bridge coalesced into one CastVotes
  vote -> screen an approximation, since wrk does not say which vote a frame counts: wrk's Lua
                 records the wall-clock time of every 200 answer (the moment the voter knew its vote
                 was accepted); the k-th answer is taken as the k-th vote the tally counts (votes are
                 counted in about the order they are accepted). A recording watcher's frame showing
                 total T at time t makes votes prev_T+1..T visible on its screen, each with delay t
                 minus its answer's time; p50/p99/max over every (recording watcher, vote) pair of the
                 run (the first --record watchers). Votes the bridge answered but wrk never read (the
                 last ones) have no answer time and are left out.
  edge delay     for every frame of every watcher: received - the snapshot's as_of (the polls
                 server's clock, same machine): the bridge's share, feed to screen
  CPU            utime+stime from /proc/<pid>/stat over each leg's window: the `agora up` process,
                 PostgreSQL, RabbitMQ, MongoDB and Cassandra (every process of theirs: they are
                 shared with whatever else runs on this machine), k6, wrk (its rusage), this process;
                 per vote = CPU / counted, per trivial request = CPU / answered
`--write` replaces this benchmark's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import grpc
import httpx
from agora.polls.v1 import polls_pb2 as pb
from agora.polls.v1 import polls_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.edge_bench import (  # noqa: E402
    cpu_seconds,
    floor_leg,
    k6_figures,
    replace_section,
    session,
    tool,
    wait_for_metric,
)
from bench.polls_bench import cpu_snapshot, cpu_used, percentile  # noqa: E402
from tests.ports import free_mesh_ports  # noqa: E402

K6_SCRIPT = ROOT / "bench" / "polls_edge_bench.k6.js"
SECTION = "## Live polls at the edge: seed votes, shared feed, CastVotes (bench/polls_edge_bench.py)"
CAST_VOTE = "agora.polls.v1.PollService.CastVote"
CAST_VOTES = "agora.polls.v1.PollService.CastVotes"
OPTIONS = 4
FEED_RATE = 10.0  # WatchResults snapshots per second at most (services/polls/live.py: min_interval 0.1 s)
GOAL_VOTES = 3000.0
GOAL_P99_MS = 250.0
MESH_ROLE = "agora up (every service + bridge)"

# wrk's script: the requests cycle over BENCH_PATHS; every 200 answer's wall-clock time (ms, the clock
# k6's Date.now() reads) is kept per thread and written out by done(), with the other statuses' counts.
WRK_SCRIPT = r"""
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(0, clock) -- CLOCK_REALTIME
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local method = os.getenv("BENCH_METHOD")
local out = os.getenv("BENCH_OUT")
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS"), "%S+") do paths[#paths + 1] = p end
local threads = {}

function setup(thread) threads[#threads + 1] = thread end

function init(args)
  prepared = {}
  for i, p in ipairs(paths) do prepared[i] = wrk.format(method, p, {}, "") end
  sent = 0
  answered = {}
  refused = {}
end

function request()
  sent = sent + 1
  return prepared[(sent % #prepared) + 1]
end

function response(status, headers, body)
  if status == 200 then
    answered[#answered + 1] = now_ms()
  else
    refused[status] = (refused[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local f = io.open(out, "w")
  for _, t in ipairs(threads) do
    for _, at in ipairs(t:get("answered")) do f:write(string.format("A %.3f\n", at)) end
    for status, n in pairs(t:get("refused")) do f:write(string.format("R %d %d\n", status, n)) end
  end
  local e = summary.errors
  f:write(string.format("S %d %d %d\n", summary.requests, summary.duration,
                        e.connect + e.read + e.write + e.timeout))
  f:close()
end
"""


@dataclass
class Mesh:
    process: subprocess.Popen
    base: str  # the bridge, http://127.0.0.1:PORT
    polls: str  # the polls gRPC server, 127.0.0.1:PORT


@dataclass
class WrkRun:
    answered: list[float]  # wall-clock ms of every 200 answer wrk read, sorted
    refused: dict[int, int]
    requests: int
    socket_errors: int
    duration: float  # seconds, wrk's own
    started: float  # time.time() just before wrk started
    cpu: float  # wrk's utime + stime
    extra: dict = field(default_factory=dict)


def start_mesh(work: Path) -> Mesh:
    """`agora up --backends real` on free ports; waits for its "ready" line, reads the polls port."""
    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_LOG_LEVEL": "warning",
           "AGORA_WRITE_RATE": "0", "AGORA_HTTP_MAX_CONNECTIONS_PER_CLIENT": "0"}
    log_path = work / "up.log"
    with open(log_path, "w") as log:
        up = subprocess.Popen([sys.executable, "-m", "agora.cli", "up", "--backends", "real",
                               "--data-dir", str(work / "data")],
                              cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while "ready" not in log_path.read_text():
        if up.poll() is not None or time.monotonic() > deadline:
            up.kill()
            raise RuntimeError(f"agora up --backends real did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    polls = re.search(r"^polls\s+grpc\s+(\S+)", log_path.read_text(), re.M)
    if polls is None:
        up.kill()
        raise RuntimeError(f"agora up printed no polls address:\n{log_path.read_text()[-3000:]}")
    return Mesh(up, f"http://127.0.0.1:{http_port}", polls.group(1))


def stop_mesh(mesh: Mesh) -> None:
    mesh.process.terminate()
    try:
        mesh.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        mesh.process.kill()


async def run_wrk(url: str, method: str, paths: list[str], seconds: int, args, work: Path) -> WrkRun:
    script, out = work / "bench.lua", work / "wrk.out"
    script.write_text(WRK_SCRIPT)
    out.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_METHOD": method, "BENCH_PATHS": " ".join(paths), "BENCH_OUT": str(out)}
    started = time.time()
    wrk = subprocess.Popen([tool("wrk"), "-t", str(args.threads), "-c", str(args.connections),
                            "-d", f"{seconds}s", "--timeout", "10s", "-s", str(script), url],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # wait4 reaps it and gives its rusage: wrk's own CPU, whatever its threads did
    _, status, usage = await asyncio.to_thread(os.wait4, wrk.pid, 0)
    wrk.returncode = os.waitstatus_to_exitcode(status)
    if wrk.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({wrk.returncode}): {wrk.stderr.read().decode()[-2000:]}")
    answered: list[float] = []
    refused: dict[int, int] = {}
    requests = socket_errors = 0
    duration = float(seconds)
    for line in out.read_text().splitlines():
        kind, *values = line.split()
        if kind == "A":
            answered.append(float(values[0]))
        elif kind == "R":
            refused[int(values[0])] = refused.get(int(values[0]), 0) + int(values[1])
        elif kind == "S":
            requests, duration, socket_errors = int(values[0]), int(values[1]) / 1e6, int(values[2])
    answered.sort()
    return WrkRun(answered, refused, requests, socket_errors, duration, started,
                  usage.ru_utime + usage.ru_stime)


async def scrape(client: httpx.AsyncClient) -> list:
    text = (await client.get("/metrics")).raise_for_status().text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def total(samples: list, name: str, **labels: str) -> float:
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def answers(samples: list) -> dict[str, float]:
    """The bridge's CastVote answers so far, by HTTP status."""
    by_status: dict[str, float] = {}
    for s in samples:
        if s.name == "agora_http_request_duration_seconds_count" and s.labels.get("route") == CAST_VOTE:
            by_status[s.labels["status"]] = by_status.get(s.labels["status"], 0.0) + s.value
    return by_status


def batches(samples: list) -> tuple[float, float]:
    """(calls, batches) the bridge has coalesced into CastVotes so far."""
    return (total(samples, "agora_bridge_batch_size_sum", method=CAST_VOTES),
            total(samples, "agora_bridge_batch_size_count", method=CAST_VOTES))


async def tally(stub, poll_id: str) -> int:
    return (await stub.GetPoll(pb.GetPollRequest(poll_id=poll_id), timeout=10)).results.total_votes


async def catch_up(stub, poll_id: str, want: int) -> tuple[float, int]:
    """(time.time() when the tally first showed `want` or more, or when it last moved; the total)."""
    seen, moved = await tally(stub, poll_id), time.time()
    while seen < want and time.time() - moved < 10:
        await asyncio.sleep(0.02)
        now = await tally(stub, poll_id)
        if now != seen:
            seen, moved = now, time.time()
    return moved, seen


async def settled_answers(client: httpx.AsyncClient) -> list:
    """/metrics once the CastVote answers still in flight when wrk stopped have been counted."""
    samples = await scrape(client)
    while True:
        await asyncio.sleep(0.3)
        again = await scrape(client)
        if answers(again) == answers(samples):
            return again
        samples = again


def cassandra_pids() -> list[int]:
    """polls_bench's cpu_snapshot knows PostgreSQL, RabbitMQ and MongoDB by name; Cassandra is a JVM."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"cassandra" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def start_watchers(url: str, args, work: Path) -> subprocess.Popen:
    env = {**os.environ, "URL": url, "SOCKETS": str(args.watchers), "VUS": str(max(1, args.watchers // 100)),
           "HOLD": "600", "RECORD": str(args.record)}
    command = [tool("k6"), "run", "--quiet", "--summary-export", str(work / "watchers.json"),
               "--console-output", str(work / "frames.log"), str(K6_SCRIPT)]
    with open(work / "k6.log", "w") as log:  # a file, not a pipe nobody reads while k6 runs
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)


def vote_to_screen(frames_log: Path, answered: list[float], base: int) -> list[float]:
    """Delays (ms) of every (recording watcher, vote) pair: see the module's docstring."""
    logs: dict[int, list[tuple[float, int]]] = {}
    if frames_log.exists():
        for match in re.finditer(r"F (\d+) (\d+) (\d+)", frames_log.read_text()):
            logs.setdefault(int(match[1]), []).append((float(match[2]), int(match[3])))
    delays: list[float] = []
    top = base + len(answered)
    for log in logs.values():
        prev = base
        for at, shown in sorted(log):
            delays.extend(at - answered[k - base] for k in range(max(prev, base), min(shown, top)))
            prev = max(prev, shown)
    return delays


async def trivial_leg(mesh: Mesh, args, work: Path) -> dict:
    """The HTTP floor: the same wrk load on the bridge's cheapest route."""
    await run_wrk(mesh.base, "GET", ["/livez"], 1, args, work)  # warm-up
    before = cpu_seconds(mesh.process.pid)
    run = await run_wrk(mesh.base, "GET", ["/livez"], args.seconds, args, work)
    cpu = cpu_seconds(mesh.process.pid) - before
    answered = len(run.answered)
    return {"rate": answered / run.duration, "answered": answered, "refused": sum(run.refused.values()),
            "cpu": cpu, "us": cpu * 1e6 / max(answered, 1), "wrk_cpu": run.cpu}


async def vote_leg(client, stub, mesh: Mesh, poll_id: str, k6: subprocess.Popen | None, args,
                   work: Path) -> dict:
    paths = [f"/vote/{poll_id}/{i}" for i in range(OPTIONS)]
    await run_wrk(mesh.base, "POST", paths, 2, args, work)  # warm-up: connections, pools, the batcher
    samples = await settled_answers(client)
    await catch_up(stub, poll_id, int(answers(samples).get("200", 0)))
    roles = {MESH_ROLE: [mesh.process.pid], "Cassandra": cassandra_pids(),
             "k6 watchers": [k6.pid] if k6 is not None else []}
    before = await scrape(client)
    base = await tally(stub, poll_id)
    cpu0 = cpu_snapshot(roles)
    run = await run_wrk(mesh.base, "POST", paths, args.seconds, args, work)
    after = await settled_answers(client)
    done0, done1 = answers(before), answers(after)
    accepted = int(done1.get("200", 0) - done0.get("200", 0))
    caught, shown = await catch_up(stub, poll_id, base + accepted)
    cpu = cpu_used(cpu0, cpu_snapshot(roles))
    cpu["wrk"] = run.cpu
    calls0, n0 = batches(before)
    calls1, n1 = batches(after)
    counted = shown - base
    elapsed = caught - run.started
    return {"accepted": accepted, "counted": counted, "exact": counted == accepted,
            "wrk_answered": len(run.answered), "wrk_requests": run.requests,
            "socket_errors": run.socket_errors,
            "refused": {status: int(n - done0.get(status, 0)) for status, n in done1.items()
                        if status != "200" and n > done0.get(status, 0)},
            "elapsed": elapsed, "rate": counted / elapsed, "answer_rate": accepted / run.duration,
            "batches": n1 - n0, "batch_mean": (calls1 - calls0) / (n1 - n0) if n1 > n0 else None,
            "cpu": cpu, "base": base, "answered": run.answered}


async def batch_leg(stub, mesh: Mesh, args) -> dict | None:
    """CastVotes straight to the polls gRPC port: --batch votes a call, --batch-concurrency in flight."""
    if not hasattr(pb, "CastVotesRequest"):
        return None  # this build's polls API has no CastVotes (the report says so)
    poll = (await stub.CreatePoll(pb.CreatePollRequest(
        question="polls edge bench: CastVotes", options=[f"option {i}" for i in range(OPTIONS)]),
        timeout=10)).poll
    request = pb.CastVotesRequest(votes=[pb.CastVoteRequest(poll_id=poll.id, option=i % OPTIONS)
                                         for i in range(args.batch)])
    outcome = {"accepted": 0, "refused": 0, "errors": 0}

    async def caller(stop_at: float) -> None:
        while time.monotonic() < stop_at:
            try:
                reply = await stub.CastVotes(request, timeout=30)
            except grpc.aio.AioRpcError:
                outcome["errors"] += 1
                continue
            ok = sum(1 for r in reply.results if r.status.code == 0)
            outcome["accepted"] += ok
            outcome["refused"] += len(reply.results) - ok

    async def load(seconds: float) -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(caller(stop_at) for _ in range(args.batch_concurrency)))

    await load(1.0)  # warm-up
    await catch_up(stub, poll.id, outcome["accepted"])
    for key in outcome:
        outcome[key] = 0
    base = await tally(stub, poll.id)
    roles = {MESH_ROLE: [mesh.process.pid], "Cassandra": cassandra_pids(),
             "load generator (this process)": [os.getpid()]}
    cpu0 = cpu_snapshot(roles)
    started = time.time()
    await load(args.seconds)
    caught, shown = await catch_up(stub, poll.id, base + outcome["accepted"])
    cpu = cpu_used(cpu0, cpu_snapshot(roles))
    counted = shown - base
    elapsed = caught - started
    return {**outcome, "counted": counted, "exact": counted == outcome["accepted"], "elapsed": elapsed,
            "rate": counted / elapsed, "cpu": cpu}


async def agora(args, work: Path) -> dict:
    mesh = start_mesh(work)
    k6 = None
    try:
        async with httpx.AsyncClient(base_url=mesh.base, timeout=30) as client, \
                grpc.aio.insecure_channel(mesh.polls) as channel:
            stub = polls_pb2_grpc.PollServiceStub(channel)
            trivial = await trivial_leg(mesh, args, work)
            creator = {"authorization": f"Bearer {await session(client, 'pollster')}"}
            created = await client.post("/v1/polls", headers=creator, json={
                "question": "polls edge bench", "options": [f"option {i}" for i in range(OPTIONS)]})
            poll_id = created.raise_for_status().json()["poll"]["id"]
            if args.watchers:
                k6 = start_watchers(f"ws://127.0.0.1:{mesh.base.rpartition(':')[2]}/v1/polls/{poll_id}:watch",
                                    args, work)
                await wait_for_metric(client, "agora_edge_feed_subscribers", args.watchers, mesh.process, k6)
            votes = await vote_leg(client, stub, mesh, poll_id, k6, args, work)
            upstream = total(await scrape(client), "agora_edge_feed_upstream_calls_total")
            await asyncio.sleep(1.0)  # the last snapshot reaches the screens
            (await client.post(f"/v1/polls/{poll_id}:close", headers=creator, json={})).raise_for_status()
            watch = {}
            if k6 is not None:
                await asyncio.to_thread(k6.wait, 120)
                watch = k6_figures(work / "watchers.json")
                metrics = json.loads((work / "watchers.json").read_text())["metrics"]
                watch["finals"] = metrics.get("finals", {}).get("count", 0)
                watch["upstream_calls"] = upstream
                delays = vote_to_screen(work / "frames.log", votes["answered"], votes["base"])
                watch.update(samples=len(delays), v_p50=percentile(delays, 0.50),
                             v_p99=percentile(delays, 0.99), v_max=max(delays, default=float("nan")))
            batch = await batch_leg(stub, mesh, args)
    finally:
        if k6 is not None and k6.poll() is None:
            k6.kill()
        stop_mesh(mesh)
    votes.pop("answered")
    return {"trivial": trivial, "votes": votes, "watch": watch, "batch": batch}


def cpu_rows(cpu: dict[str, float], per: float) -> list[str]:
    return [f"| {role} | {used:.2f} s | {used * 1e6 / per:,.0f} µs |"
            for role, used in sorted(cpu.items(), key=lambda kv: -kv[1]) if used > 0.005 and per]


def report(floor: dict | None, r: dict, args, load_before: float) -> str:
    t, v, w, b = r["trivial"], r["votes"], r["watch"], r["batch"]
    mesh_us = v["cpu"].get(MESH_ROLE, 0.0) * 1e6 / max(v["counted"], 1)
    servers = sum(c for role, c in v["cpu"].items() if role not in ("wrk", "k6 watchers"))
    lines = [
        f"`agora up --backends real` on this machine ({os.cpu_count()} cores, load average before "
        f"{load_before:.1f}), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; wrk {args.threads} thread(s), "
        f"{args.connections} connections, {args.seconds} s per leg; {args.watchers:,} k6 WebSocket watchers "
        f"of the poll's WatchResults feed.",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| HTTP floor: `GET /livez`, same wrk load | {t['rate']:,.0f}/s ({t['refused']} not 200) |",
        f"| votes accepted (bridge's 200s) / counted by the tally | {v['accepted']:,} / {v['counted']:,}: "
        f"**{'exact' if v['exact'] else 'NOT EXACT'}** |",
        f"| wrk's own count of 200s (misses the answers in flight at its stop) | {v['wrk_answered']:,} |",
        f"| refused (status: count) | {v['refused'] or 'none'}; socket errors {v['socket_errors']} |",
        f"| votes answered per second | {v['answer_rate']:,.0f}/s |",
        f"| exact votes/s, tallies caught up ({v['elapsed']:.1f} s from the first vote to the last counted) "
        f"| **{v['rate']:,.0f}/s** |",
        f"| ratio to the HTTP floor | {v['rate'] / t['rate']:.2f}x |",
        "| mean CastVotes batch at the bridge | "
        + (f"{v['batch_mean']:.1f} votes ({v['batches']:,.0f} batches) |" if v["batch_mean"] is not None
           else "no batches (this build's bridge does not batch CastVote) |"),
        f"| `agora up` CPU per vote / per floor request | {mesh_us:,.0f} µs / {t['us']:,.0f} µs = "
        f"{mesh_us / t['us']:.1f}x |",
    ]
    if w:
        lines += [
            f"| vote → screen, p50 / p99 / max ({w['samples']:,} (watcher, vote) pairs, {args.record} "
            f"recording watchers) | {w['v_p50']:.0f} / **{w['v_p99']:.0f}** / {w['v_max']:.0f} ms |",
            f"| edge delay (snapshot as_of → frame received), p50 / p99 / max, every watcher | "
            f"{w['p50']:.0f} / {w['p99']:.0f} / {w['max']:.0f} ms |",
            f"| watchers: opened / final frame received / closed early | {w['opened']:,.0f} / "
            f"{w['finals']:,.0f} / {w['closed_early']:,.0f} ({w['frames']:,.0f} frames, "
            f"{w['upstream_calls']:.0f} upstream WatchResults call(s)) |",
        ]
    per = float("nan")
    if floor:
        per = floor["cpu"] * 1e6 / floor["frames"] if floor["frames"] else float("nan")
        lines.append(f"| watcher floor: `websockets.broadcast` to {args.watchers:,} k6 watchers at "
                     f"{FEED_RATE:g}/s: delivered, p99, CPU per delivery | {floor['frames']:,.0f} / "
                     f"{floor['sent']:,}, {floor['p99']:.1f} ms, {per:.1f} µs |")
    if b is not None:
        lines.append(f"| CastVotes over gRPC ({args.batch} votes a call, {args.batch_concurrency} in "
                     f"flight): accepted / counted, exact votes/s | {b['accepted']:,} / {b['counted']:,} "
                     f"({'exact' if b['exact'] else 'NOT EXACT'}; {b['errors']} failed calls), "
                     f"**{b['rate']:,.0f}/s** ({b['rate'] / max(v['rate'], 1e-9):.1f}x the seed route) |")
    else:
        lines.append("| CastVotes over gRPC | not measured: this build's polls API has no CastVotes |")
    met_rate = v["exact"] and v["rate"] >= GOAL_VOTES
    lines += [
        "",
        f"- goal ≥ {GOAL_VOTES:,.0f} exact votes/s: {'met' if met_rate else 'not met'}"
        + (f"; goal p99 vote → screen < {GOAL_P99_MS:g} ms: "
           f"{'met' if w and w['v_p99'] < GOAL_P99_MS else 'not met'}" if w else ""),
        "",
        f"Where the CPU went while the seed-route votes ran ({v['elapsed']:.1f} s; PostgreSQL, RabbitMQ, "
        "MongoDB and Cassandra are every process of theirs, whatever else used them):",
        "", "| process | CPU | per vote counted |", "|---|---:|---:|",
        *cpu_rows(v["cpu"], v["counted"]),
        f"| servers and mesh, without the load generators | {servers:.2f} s | "
        f"{servers * 1e6 / max(v['counted'], 1):,.0f} µs |",
    ]
    if floor and w:
        owed = args.watchers * FEED_RATE * v["elapsed"]
        lines += ["", f"At the watcher floor's {per:.1f} µs per delivery, the {owed:,.0f} frames the "
                  f"watchers are owed during the votes ({args.watchers:,} × {FEED_RATE:g}/s × "
                  f"{v['elapsed']:.1f} s) "
                  f"cost {owed * per / 1e6:.2f} s of CPU whatever the service does; `agora up` used "
                  f"{v['cpu'].get(MESH_ROLE, 0.0):.2f} s for the votes and the frames together."]
    if b is not None:
        lines += ["", f"CastVotes leg ({b['elapsed']:.1f} s):", "",
                  "| process | CPU | per vote counted |", "|---|---:|---:|",
                  *cpu_rows(b["cpu"], b["counted"])]
    return "\n".join(lines)


def votes_per_call(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"{text!r}: CastVotes takes 1 to 500 votes a call")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000, help="k6 WebSocket watchers of the poll")
    parser.add_argument("--record", type=int, default=20,
                        help="watchers whose every frame is logged for vote -> screen")
    parser.add_argument("--seconds", type=int, default=20, help="length of each measured leg")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--batch", type=votes_per_call, default=100, metavar="1..500",
                        help="votes per CastVotes call")
    parser.add_argument("--batch-concurrency", type=int, default=4, help="CastVotes calls in flight")
    parser.add_argument("--write", action="store_true", help="replace this section of bench/RESULTS.md")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="polls-edge-bench-") as tmp:
        work = Path(tmp)
        floor = floor_leg(args.watchers, FEED_RATE, args.seconds, work) if args.watchers else None
        r = asyncio.run(agora(args, work))
    text = report(floor, r, args, load_before)
    print(text)
    if args.write:
        replace_section(SECTION, "source /tmp/agora-data/env.sh; .venv/bin/python bench/polls_edge_bench.py "
                        + " ".join(sys.argv[1:]), text)


if __name__ == "__main__":
    main()
