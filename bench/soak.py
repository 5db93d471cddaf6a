"""Soak: mixed load (votes, bids, orders -> payments, chat with resuming watchers) on the mesh as separate
processes against the real servers, a fault every --fault-every seconds, RSS of every process sampled.

    .venv/bin/python bench/soak.py --minutes 30

At the end every workload's invariant is checked (accepted == stored/counted, no duplicates, every
order final, no stream gap), and memory growth per process is compared with --rss-bound-mb, measured
from the sample taken after the first minute (warm caches) to the last. Exit 1 when either fails.
Not a CI test: the figures go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults import harness  # noqa: E402
from tests.faults.workloads import Bids, ChatResume, Orders, Votes  # noqa: E402

FAULTS = ["rabbitmq-restart", "sigkill-polls", "postgres-restart", "sigkill-payments", "mongodb-restart",
          "sigkill-chat", "cassandra-freeze", "sigkill-orders", "sigkill-auctions", "sigkill-gateway"]


async def inject(mesh, fault: str) -> None:
    if fault == "rabbitmq-restart":
        await harness.rabbitmq_down(5)
    elif fault == "postgres-restart":
        await harness.postgres_down(4)
    elif fault == "mongodb-restart":
        await harness.mongodb_down(3)
    elif fault == "cassandra-freeze":
        await harness.cassandra_frozen(6)
    else:
        await harness.process_killed(mesh, fault.removeprefix("sigkill-"), 2)


async def soak(minutes: float, fault_every: float, rss_bound_mb: float) -> int:
    work = Path(tempfile.mkdtemp(prefix="agora-soak-"))
    mesh = harness.FaultMesh(work)
    faults_done: list[tuple[str, float]] = []
    samples: list[tuple[float, dict[str, int]]] = []
    try:
        await asyncio.to_thread(mesh.start)
        async with httpx.AsyncClient(base_url=mesh.base_url, timeout=15,
                                     limits=httpx.Limits(max_connections=50)) as http:
            loads = [Votes(http), Bids(http), Orders(http), ChatResume(http)]
            for load in loads:
                await load.prepare()
            stop = asyncio.Event()
            chat = loads[3]
            watcher = asyncio.create_task(chat.watch(per_cut=50))
            await asyncio.sleep(0.5)
            writers = [asyncio.create_task(load.run(stop, pause=0.05)) for load in loads]
            started = time.monotonic()
            end = started + minutes * 60
            next_fault = started + fault_every
            next_sample = started
            cycle = itertools.cycle(FAULTS)
            while time.monotonic() < end:
                now = time.monotonic()
                if now >= next_sample:
                    samples.append((now - started, mesh.rss_kb()))
                    next_sample = now + 10
                if now >= next_fault and now + 60 < end:
                    fault = next(cycle)
                    t0 = time.monotonic()
                    await inject(mesh, fault)
                    faults_done.append((fault, time.monotonic() - t0))
                    print(f"[{now - started:7.0f} s] {fault} survived ({time.monotonic() - t0:.1f} s)",
                          flush=True)
                    next_fault = time.monotonic() + fault_every
                await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*writers)
            await chat.finish(stop)
            await asyncio.wait_for(watcher, 120)
            samples.append((time.monotonic() - started, mesh.rss_kb()))
            outcomes = []
            failed = False
            for load in loads:
                try:
                    outcomes.append((load.name, load.invariant, "ok: " + await load.check()))
                except AssertionError as exc:
                    failed = True
                    outcomes.append((load.name, load.invariant, f"FAILED: {exc}"))
        warm = next((s for t, s in samples if t >= 60), samples[0][1])
        last = samples[-1][1]
        growth = {name: (last.get(name, 0) - warm.get(name, 0)) / 1024 for name in last}
        worst = max(growth.values()) if growth else 0.0
        accepted = sum(len(load.accepted) for load in loads)
        elapsed = samples[-1][0]
        print(f"\n## Soak (bench/soak.py --minutes {minutes:g} --fault-every {fault_every:g})\n")
        print(f"{elapsed / 60:.1f} min of mixed load; {accepted} writes accepted "
              f"({accepted / elapsed:.1f}/s); {len(faults_done)} faults: "
              + ", ".join(f"{f} ({d:.0f} s)" for f, d in faults_done))
        print("\n| workload | invariant | result |\n|---|---|---|")
        for name, invariant, outcome in outcomes:
            print(f"| {name} | {invariant} | {outcome} |")
        print(f"\nRSS per process, MiB, after 1 min -> end (bound +{rss_bound_mb:g} MiB):")
        print("\n| process | after 1 min | end | growth |\n|---|---|---|---|")
        for name in sorted(last):
            print(f"| {name} | {warm.get(name, 0) / 1024:.0f} | {last[name] / 1024:.0f} | "
                  f"{growth[name]:+.1f} |")
        if worst > rss_bound_mb:
            print(f"\nRSS bound exceeded: +{worst:.1f} MiB > {rss_bound_mb:g} MiB")
            failed = True
        return 1 if failed else 0
    finally:
        await asyncio.to_thread(mesh.close)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=45.0, help="seconds between faults")
    parser.add_argument("--rss-bound-mb", type=float, default=64.0, help="allowed RSS growth per process")
    args = parser.parse_args()
    return asyncio.run(soak(args.minutes, args.fault_every, args.rss_bound_mb))


if __name__ == "__main__":
    sys.exit(main())
