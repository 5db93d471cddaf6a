"""Each fault under a workload, with its invariant checked after recovery; one test id per pair.

The mesh runs as separate processes against the real servers (tests/faults/harness.py). Each fault is
undone and verified in a finally inside the fault function before the invariant is checked.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.faults import harness
from tests.faults.conftest import RESULTS
from tests.faults.workloads import Bids, ChatExact, ChatResume, Orders, Votes


def _fault(kind: str, seconds: float):
    async def inject(mesh):
        if kind == "rabbitmq-restart":
            await harness.rabbitmq_down(seconds)
        elif kind == "postgres-restart":
            await harness.postgres_down(seconds)
        elif kind == "mongodb-restart":
            await harness.mongodb_down(seconds)
        elif kind == "cassandra-freeze":
            await harness.cassandra_frozen(seconds)
        elif kind.startswith("sigkill-"):
            await harness.process_killed(mesh, kind.removeprefix("sigkill-"), seconds)
        elif kind == "client-cut":
            await asyncio.sleep(seconds)  # the workload's watcher cuts itself mid-stream
        else:
            raise ValueError(kind)

    return inject


CASES = [
    ("rabbitmq-restart", Votes, 4.0),
    ("postgres-restart", Bids, 3.0),
    ("mongodb-restart", Votes, 2.0),
    ("cassandra-freeze", Orders, 5.0),
    ("sigkill-polls", Votes, 1.0),
    ("sigkill-auctions", Bids, 1.0),
    ("sigkill-payments", Orders, 1.0),
    ("sigkill-orders", Orders, 1.0),
    pytest.param("sigkill-chat", ChatResume, 1.0),
    ("client-cut", ChatResume, 2.0),
    ("sigkill-chat", ChatExact, 1.0),  # finding 11: accepted == delivered exactly across a resume
]


@pytest.mark.parametrize(("fault", "workload", "seconds"), CASES,
                         ids=[f"{c.values[0] if hasattr(c, 'values') else c[0]}--"
                              f"{(c.values[1] if hasattr(c, 'values') else c[1]).name}" for c in CASES])
async def test_fault(fault_mesh, fault, workload, seconds):
    async with httpx.AsyncClient(base_url=fault_mesh.base_url, timeout=15) as http:
        load = workload(http)
        await load.prepare()
        stop = asyncio.Event()
        watcher = asyncio.create_task(load.watch()) if isinstance(load, ChatResume) else None  # ChatExact too
        if watcher is not None:
            await asyncio.sleep(0.5)  # subscribed before the first message
        writer = asyncio.create_task(load.run(stop))
        started = time.monotonic()
        try:
            await asyncio.sleep(1.0)  # load before the fault
            await _fault(fault, seconds)(fault_mesh)
            await asyncio.sleep(1.5)  # load after recovery
        finally:
            stop.set()
            await asyncio.wait_for(writer, 120)
        if watcher is not None:
            await load.finish(stop)
            await asyncio.wait_for(watcher, 90)
        assert load.accepted, "nothing was accepted: the workload never ran"
        outcome = await load.check()
        RESULTS.append((fault, load.name, load.invariant,
                        f"ok: {outcome} ({time.monotonic() - started:.0f} s)"))
