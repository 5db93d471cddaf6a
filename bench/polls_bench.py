"""Live polls: sustained CastVote throughput with tallies caught up, and vote-to-WatchResults delay.

    .venv/bin/python bench/polls_bench.py [--backends real] [--seconds 15] [--watchers 1000] [--write]

Every part is its own process, so no two share a GIL, as in a deployment:
  polls API  --replicas processes of the polls server (API, outbox relay, closing clock, results
             board) on one port (SO_REUSEPORT: the kernel spreads connections), real backends by
             default (PostgreSQL + MongoDB + RabbitMQ), unique schema / database / group
  tally      the tally consumer alone (`python -m services.polls.handlers`, as the polls-tally
             Deployment runs it); --no-tally-apart keeps it inside the API process
  watchers   --watchers WatchResults streams over --watch-connections connections; the first
             100 record every message
  trivial    a grpc.aio server with one no-op unary method: the baseline
  floor      a bare grpc.aio server streaming one pre-serialized results message to the same
             watchers 10 times a second: what the watchers cost whatever the service does
The load generator runs --concurrency concurrent unary calls over --connections connections,
first against the trivial server (the ceiling of one Python client and one Python server on
these cores), then CastVote against the polls API with unique voter keys (ONE_PER_VOTER_KEY
poll), while the watchers are connected. The CPU each process used while the votes ran is read
from /proc and reported per vote, with the floors, so the report shows where the cores went.

Figures:
  votes/s           accepted votes / time from the first vote until the tally (GetPoll) counts
                    them all: throughput with the tallies caught up
  vs trivial        votes/s / trivial unary calls/s
  vote-to-screen    for a recording watcher, a message showing total T at time t makes votes
                    prev_T+1..T visible; each one's delay is t minus its acceptance time (votes
                    ordered by acceptance: the tally counts in about that order); p50/p99 over
                    every (recording watcher, vote) pair
`--write` replaces this benchmark's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from agora.polls.v1 import polls_pb2 as pb
from agora.polls.v1 import polls_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Live polls (bench/polls_bench.py)"
TRIVIAL = "/bench.Trivial/Ping"


# -- child processes


async def serve_trivial() -> None:
    async def ping(request: bytes, context) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Trivial", {"Ping": grpc.unary_unary_rpc_method_handler(ping)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def serve_polls(backends: str, schema: str, mongo_db: str, group: str, data_dir: str,
                      tally_apart: str = "0", port: str = "0", primary: str = "1") -> None:
    from services.kit.config import Settings
    from services.kit.server import DomainServer, settle_heap
    from services.mesh.launcher import Runtime
    from services.polls.service import build

    settings = Settings.from_env(backends=backends, data_dir=Path(data_dir), log_level="WARNING")
    from services.kit import logs

    logs.configure("WARNING", "text")
    runtime = Runtime(settings)
    apart = tally_apart == "1" and backends == "real"
    primary_replica = primary == "1"
    spec = await build(runtime, schema=schema, mongo_db=mongo_db, tally_group=group, run_tally=not apart,
                       sqlite_path=str(Path(data_dir) / "polls.sqlite3"))
    tally = None
    if apart and primary_replica:
        tally = subprocess.Popen([sys.executable, "-m", "services.polls.handlers", "--schema", schema,
                                  "--mongo-db", mongo_db, "--group", group], stdout=subprocess.PIPE,
                                 text=True, cwd=ROOT,
                                 env={**os.environ, "AGORA_BACKENDS": "real", "AGORA_LOG_LEVEL": "WARNING"})
        assert tally.stdout.readline().strip() == "tally consumer ready"
    server = DomainServer(spec, host="127.0.0.1", port=int(port), grace=1.0)
    await server.start()
    settle_heap()  # as `agora serve` does once its servers are up
    print(f"ready {server.address}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop()
    if tally is not None:
        stop_child(tally)
    bus = await runtime.bus()
    if backends == "real" and primary_replica:
        await bus.delete_group(group)
    await runtime.close()
    if backends == "real" and primary_replica:
        from services.polls.stores.mongo import MongoTallyStore
        from services.polls.stores.postgres import PostgresPollStore

        pg = PostgresPollStore(settings.postgres_url, schema=schema)
        await pg.drop()
        await pg.close()
        mongo = MongoTallyStore(settings.mongo_url, mongo_db)
        await mongo.drop()
        await mongo.close()


def open_channels(target: str, count: int) -> list[grpc.aio.Channel]:
    """`count` channels, each with its own TCP connection (as many clients would have)."""
    return [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(count)]


async def run_watchers(target: str, poll_id: str, count: int, record: int, out: str,
                       connections: int) -> None:
    channels = open_channels(target, connections)
    stubs = [polls_pb2_grpc.PollServiceStub(c) for c in channels]
    logs: list[list[tuple[float, int]]] = [[] for _ in range(record)]
    connected = 0
    first = asyncio.Event()

    async def watch(i: int) -> None:
        nonlocal connected
        call = stubs[i % len(stubs)].WatchResults(pb.WatchResultsRequest(poll_id=poll_id))
        got_first = False
        async for message in call:
            if not got_first:
                got_first = True
                connected += 1
                if connected == count:
                    first.set()
            if i < record:
                logs[i].append((time.monotonic(), message.results.total_votes))
            if message.final:
                return

    tasks = [asyncio.create_task(watch(i)) for i in range(count)]
    try:
        await asyncio.wait_for(first.wait(), 120)
        print("watching", flush=True)
        await asyncio.wait(tasks, timeout=600)
    finally:
        # Stopped (SIGINT) or done: write what was recorded either way.
        failed = [t.exception() for t in tasks
                  if t.done() and not t.cancelled() and t.exception() is not None]
        Path(out).write_text(json.dumps({"logs": logs, "failed": len(failed),
                                         "first_error": repr(failed[0]) if failed else ""}))
        for t in tasks:
            t.cancel()
        for channel in channels:
            await channel.close()


# -- the load generator


async def load(calls, make_request, seconds: float, concurrency: int) -> tuple[list[float], int, float]:
    """Run `concurrency` loops of unary calls for `seconds`, spread over `calls` (one per
    connection); (acceptance times, errors, elapsed)."""
    accepted: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    counter = iter(range(10**9))

    async def worker(call) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            try:
                await call(make_request(next(counter)), timeout=30)
                accepted.append(time.monotonic())
            except grpc.aio.AioRpcError:
                errors += 1

    started = time.monotonic()
    await asyncio.gather(*(worker(calls[j % len(calls)]) for j in range(concurrency)))
    return accepted, errors, time.monotonic() - started


def start_child(*args: str, stdin: bool = False) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            stdin=subprocess.PIPE if stdin else None)
    line = proc.stdout.readline().strip()
    if not line.startswith("ready") and line != "watching":
        proc.kill()
        raise RuntimeError(f"child {args[0]} did not start: {line!r}")
    return proc, line.partition(" ")[2]


def stop_child(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- where the CPU goes: per process role, read from /proc (Linux)

SERVERS = {"postgres": "PostgreSQL", "beam.smp": "RabbitMQ", "mongod": "MongoDB"}


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_snapshot(roles: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds used so far by each process of each role, plus the machine's servers by name."""
    snap = {role: {pid: _cpu_seconds(pid) for pid in pids} for role, pids in roles.items()}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if name in SERVERS:
                snap.setdefault(SERVERS[name], {})[int(entry.name)] = _cpu_seconds(int(entry.name))
    return snap


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    return {role: sum(cpu - before.get(role, {}).get(pid, 0.0) for pid, cpu in pids.items())
            for role, pids in after.items()}


async def serve_fanout_floor(count: str) -> None:
    """A bare grpc.aio server (no interceptors, no stores) sending one pre-serialized results
    message of the polls bench's size to every WatchResults stream, 10 times a second: the floor
    of what 1,000 watchers cost, whatever the service does."""
    results = pb.WatchResultsResponse(sequence=1, results=pb.PollResults(
        poll_id=str(uuid.uuid4()),
        tallies=[pb.OptionTally(index=i, text=f"o{i}", votes=123_456) for i in range(4)],
        total_votes=493_824, sequence=1))
    payload = results.SerializeToString()
    tick = asyncio.Event()
    sent = 0

    async def watch(request: bytes, context):
        nonlocal sent
        yield payload
        while True:
            await tick.wait()  # the tick of the moment; the loop below replaces it after setting it
            sent += 1
            yield payload

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "agora.polls.v1.PollService", {"WatchResults": grpc.unary_stream_rpc_method_handler(watch)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"ready 127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # the watchers are connected
    started, cpu0, sent0 = time.monotonic(), time.process_time(), sent
    while time.monotonic() - started < float(count):
        await asyncio.sleep(0.1)
        tick.set()
        tick = asyncio.Event()
    print(f"{sent - sent0} {time.process_time() - cpu0}", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    await server.stop(0)


async def fanout_floor(args) -> dict:
    floor, address = start_child("floor", "5", stdin=True)
    watchers = subprocess.Popen(  # noqa: ASYNC220 - a child started once, before the timed part
        [sys.executable, __file__, "watch", address, "floor", str(args.watchers), "0", os.devnull,
         str(args.watch_connections)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        if watchers.stdout.readline().strip() != "watching":
            raise RuntimeError("the floor's watchers did not connect")
        client0 = _cpu_seconds(watchers.pid)
        floor.stdin.write("go\n")
        floor.stdin.flush()
        sent, server_cpu = floor.stdout.readline().split()
        client_cpu = _cpu_seconds(watchers.pid) - client0
        floor.stdin.write("stop\n")
        floor.stdin.flush()
    finally:
        watchers.send_signal(signal.SIGINT)
        watchers.wait(60)
        stop_child(floor)
    messages = int(sent)
    return {"floor_messages": messages, "floor_server_us": float(server_cpu) * 1e6 / max(messages, 1),
            "floor_client_us": client_cpu * 1e6 / max(messages, 1)}


async def bench(args) -> dict:
    # Baseline: the same client, the same concurrency, a no-op unary RPC on a Python server.
    trivial, address = start_child("trivial")
    channels = open_channels(address, args.connections)
    try:
        pings = [c.unary_unary(TRIVIAL) for c in channels]
        await load(pings, lambda i: b"x" * 40, 1.0, args.concurrency)  # warm up
        cpu0 = (_cpu_seconds(os.getpid()), _cpu_seconds(trivial.pid))
        done, errors, elapsed = await load(pings, lambda i: b"x" * 40, args.seconds, args.concurrency)
        trivial_client_us, trivial_server_us = (
            (after - before) * 1e6 / max(len(done), 1)
            for before, after in zip(cpu0, (_cpu_seconds(os.getpid()), _cpu_seconds(trivial.pid))))
        trivial_rate = len(done) / elapsed
    finally:
        for channel in channels:
            await channel.close()
        stop_child(trivial)
    print(f"trivial unary: {trivial_rate:,.0f}/s ({errors} errors); CPU per call: server "
          f"{trivial_server_us:.0f} us, client {trivial_client_us:.0f} us", flush=True)
    floor = await fanout_floor(args) if args.watchers else {}
    if floor:
        print(f"fan-out floor: {floor['floor_messages']:,} messages; CPU per message: server "
              f"{floor['floor_server_us']:.0f} us, watchers' client {floor['floor_client_us']:.0f} us",
              flush=True)

    run = uuid.uuid4().hex[:8]
    data_dir = tempfile.mkdtemp(prefix="polls-bench-")
    serve_args = ("serve", args.backends, f"bench_{run}", f"bench_{run}", f"bench-{run}", data_dir,
                  "1" if args.tally_apart else "0")
    server, target = start_child(*serve_args, "0", "1")
    # Further replicas listen on the same port (SO_REUSEPORT): the kernel spreads connections.
    replicas = [start_child(*serve_args, target.rpartition(":")[2], "0")[0] for _ in range(args.replicas - 1)]
    out = Path(data_dir) / "watchers.json"
    watchers = None
    channels = open_channels(target, args.connections)
    try:
        stubs = [polls_pb2_grpc.PollServiceStub(c) for c in channels]
        stub = stubs[0]
        poll = (await stub.CreatePoll(pb.CreatePollRequest(
            question="bench", options=[f"o{i}" for i in range(4)],
            vote_policy=pb.VOTE_POLICY_ONE_PER_VOTER_KEY), timeout=10)).poll
        # Warm the server, its connections and the tally consumer with a short burst.
        await load([s.CastVote for s in stubs], lambda i: pb.CastVoteRequest(
            poll_id=poll.id, option=i % 4, voter_key=f"warm{i}"), 1.0, args.concurrency)
        if args.watchers:
            watchers = subprocess.Popen(  # noqa: ASYNC220 - a child started once, before the timed part
                [sys.executable, __file__, "watch", target, poll.id, str(args.watchers), "100", str(out),
                 str(args.watch_connections)],
                stdout=subprocess.PIPE, text=True, cwd=ROOT)
            line = watchers.stdout.readline().strip()
            if line != "watching":
                raise RuntimeError(f"watchers did not connect: {line!r}")
        base = (await stub.GetPoll(pb.GetPollRequest(poll_id=poll.id), timeout=10)).results.total_votes
        roles = {"load generator (this process)": [os.getpid()],
                 "polls API": [server.pid, *(r.pid for r in replicas)],
                 "tally consumer": _children(server.pid),
                 "watchers": [watchers.pid] if watchers is not None else []}
        cpu_before = cpu_snapshot(roles)
        started = time.monotonic()
        accepted, errors, elapsed = await load(
            [s.CastVote for s in stubs],
            lambda i: pb.CastVoteRequest(poll_id=poll.id, option=i % 4, voter_key=f"v{i}"),
            args.seconds, args.concurrency)
        want = base + len(accepted)
        while True:
            total = (await stub.GetPoll(pb.GetPollRequest(poll_id=poll.id), timeout=10)).results.total_votes
            if total >= want:
                break
            if time.monotonic() - started > args.seconds + 120:
                raise RuntimeError(f"the tally stopped at {total} of {want}")
            await asyncio.sleep(0.01)
        caught_up = time.monotonic() - started
        cpu = cpu_used(cpu_before, cpu_snapshot(roles))
    finally:
        if watchers is not None:
            # The poll stays open: the watchers are told to stop by SIGTERM after their last update lands.
            await asyncio.sleep(1.0)
            watchers.send_signal(signal.SIGINT)
            try:
                watchers.wait(60)
            except subprocess.TimeoutExpired:
                watchers.kill()
        for channel in channels:
            await channel.close()
        for replica in replicas:
            stop_child(replica)
        stop_child(server)

    votes_rate = len(accepted) / caught_up
    delays: list[float] = []
    failed = 0
    if watchers is not None and out.exists():
        report = json.loads(out.read_text())
        failed = report["failed"]
        accepted.sort()
        for log in report["logs"]:
            prev = base
            for t, total in log:
                for k in range(max(prev, base), min(total, want)):
                    delays.append(t - accepted[k - base])
                prev = max(prev, total)
    result = {
        "trivial_rate": trivial_rate, "votes_rate": votes_rate, "accept_rate": len(accepted) / elapsed,
        "votes": len(accepted), "errors": errors, "caught_up": caught_up, "elapsed": elapsed,
        "p50": percentile(delays, 0.50) * 1000, "p99": percentile(delays, 0.99) * 1000,
        "samples": len(delays), "watchers": args.watchers, "watch_failed": failed,
        "trivial_server_us": trivial_server_us, "trivial_client_us": trivial_client_us,
        "cpu": {role: used / caught_up for role, used in cpu.items()},  # cores, while votes ran
        **floor,
    }
    return result


async def watchers_main(target: str, poll_id: str, count: str, record: str, out: str,
                        connections: str) -> None:
    task = asyncio.create_task(run_watchers(target, poll_id, int(count), int(record), out, int(connections)))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    await asyncio.wait({task, asyncio.create_task(stop.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if not task.done():
        task.cancel()
    # Write what was recorded even when stopped early.
    with __import__("contextlib").suppress(BaseException):
        await task


def budget_lines(r: dict) -> list[str]:
    """What the floors measured in this run leave for everything else at the goals' rates."""
    if "floor_server_us" not in r:
        return []
    cores = os.cpu_count() or 1
    unary_us = r["trivial_server_us"] + r["trivial_client_us"]
    fanout = r["watchers"] * 10 * (r["floor_server_us"] + r["floor_client_us"]) / 1e6
    measured_rest = sum(c for role, c in r["cpu"].items()
                        if role not in ("watchers", "load generator (this process)"))
    # the API's share of the fan-out is the floor's server part; the rest of the API's CPU is the votes'
    rest_us = ((measured_rest - r["watchers"] * 10 * r["floor_server_us"] / 1e6) * 1e6 / r["votes_rate"]
               - r["trivial_server_us"])
    lines = ["", "Budget at the goals, from the floors above (each vote needs at least one unary call's "
             "server and client CPU; the watchers need the fan-out floor whatever the service does):", "",
             "| rate | unary floors | fan-out floor | left on these cores for the stores, the broker, "
             "the tally, the relay and the API's own work |", "|---|---:|---:|---:|"]
    for label, rate in (("3,000 votes/s", 3000.0), (f"0.4x trivial = {0.4 * r['trivial_rate']:,.0f} votes/s",
                                                      0.4 * r["trivial_rate"])):
        unary = rate * unary_us / 1e6
        left = cores - unary - fanout
        lines.append(f"| {label} | {unary:.2f} cores | {fanout:.2f} cores | "
                     + (f"{left:.2f} cores = {left * 1e6 / rate:,.0f} us per vote |" if left > 0 else
                        f"none: {-left:.2f} cores short |"))
    lines += ["", f"This run spent {rest_us:,.0f} us of CPU per vote on that work (PostgreSQL, RabbitMQ, "
              "MongoDB, the tally consumer, and the API beyond a trivial call's floor and the fan-out "
              "floor)."]
    return lines


def write_section(text: str) -> None:
    current = RESULTS.read_text()
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    current = pattern.sub("", current).rstrip("\n") + "\n\n"
    RESULTS.write_text(current + text.rstrip("\n") + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "trivial":
        asyncio.run(serve_trivial())
        return
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        asyncio.run(serve_polls(*sys.argv[2:10]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "floor":
        asyncio.run(serve_fanout_floor(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "watch":
        asyncio.run(watchers_main(*sys.argv[2:8]))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="real", choices=["real", "embedded"])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=2, help="polls API processes sharing one port")
    parser.add_argument("--connections", type=int, default=4, help="client connections for the unary load")
    parser.add_argument("--watch-connections", type=int, default=8,
                        help="connections the watchers spread over")
    parser.add_argument("--tally-apart", action=argparse.BooleanOptionalAction, default=True,
                        help="run the tally consumer as its own process, as deployed (real backends only)")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("AGORA_LOG_LEVEL", "WARNING")
    load_before = os.getloadavg()[0]
    r = asyncio.run(bench(args))
    r["load_before"] = load_before
    ratio = r["votes_rate"] / r["trivial_rate"]
    print(json.dumps(r, indent=2))
    lines = [
        SECTION, "",
        (f"Command: `.venv/bin/python bench/polls_bench.py --backends {args.backends} "
        f"--seconds {args.seconds:g} "
        f"--concurrency {args.concurrency} --watchers {args.watchers} --replicas {args.replicas} "
        f"--connections {args.connections} --watch-connections {args.watch_connections}"
        f"{'' if args.tally_apart else ' --no-tally-apart'}{' --write' if args.write else ''}` "
        f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; load average before the run "
        f"{r['load_before']:.1f}; every part is its own process)."),
        "", "| figure | value |", "|---|---:|",
        f"| trivial grpc.aio unary RPC (baseline, same client) | {r['trivial_rate']:,.0f}/s |",
        f"| CastVote accepted | {r['accept_rate']:,.0f}/s ({r['votes']:,} votes, {r['errors']} errors) |",
        f"| votes/s with tallies caught up | {r['votes_rate']:,.0f}/s |",
        f"| ratio to trivial unary | {ratio:.2f}x |",
        (f"| vote-to-WatchResults delay, p50 / p99 ({r['watchers']:,} watchers, {r['samples']:,} samples) "
        f"| {r['p50']:.0f} ms / {r['p99']:.0f} ms |"),
        "",
        (f"- goal >= 3,000 votes/s: {'met' if r['votes_rate'] >= 3000 else 'not met'}; goal >= 0.4x trivial: "
        f"{'met' if ratio >= 0.4 else 'not met'}; "
        f"goal p99 < 250 ms: {'met' if r['p99'] < 250 else 'not met'}"),
        f"- watcher streams that failed: {r['watch_failed']}",
        "",
        f"Where the {os.cpu_count()} cores went while the votes ran ({r['votes_rate']:,.0f} votes/s):",
        "", "| process | cores | CPU per vote |", "|---|---:|---:|",
        *(f"| {role} | {cores:.2f} | {cores * 1e6 / r['votes_rate']:,.0f} us |"
          for role, cores in sorted(r["cpu"].items(), key=lambda kv: -kv[1]) if cores > 0.005),
        f"| all of these | {sum(r['cpu'].values()):.2f} | |",
        "",
        (f"Floors measured in the same run: a trivial unary call costs {r['trivial_server_us']:.0f} us "
         f"of server and {r['trivial_client_us']:.0f} us of client CPU"
         + (f"; a bare grpc.aio server sending one pre-serialized results message to {r['watchers']:,} "
            f"streams 10 times a second costs {r['floor_server_us']:.0f} us of server and "
            f"{r['floor_client_us']:.0f} us of watcher-client CPU per message, "
            f"{r['watchers'] * 10 * (r['floor_server_us'] + r['floor_client_us']) / 1e6:.2f} "
            f"cores for the {r['watchers'] * 10:,} messages/s the watchers are owed"
            if "floor_server_us" in r else "")
         + "."),
        *budget_lines(r),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
