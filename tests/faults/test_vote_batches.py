"""Batched votes under faults: many concurrent voters through the bridge, whose batcher coalesces
their CastVote calls into CastVotes batches (one transaction, one `polls.votes.cast` event each),
while polls is SIGKILLed mid-batch or RabbitMQ restarts. Invariant: every vote acknowledged to a
client (200) is counted exactly once, and the votes did go through multi-vote batches.

A voter retries its vote with the same request_id until it is answered 200 (a batch that failed as a
whole answered every voter in it 503), so a vote whose batch committed before the kill answers its
first result on the retry and is not counted again.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

from tests.faults.conftest import RESULTS
from tests.faults.test_faults import _fault
from tests.faults.workloads import Votes, send_until_accepted, uid

VOTERS = 24  # concurrent voters: enough that the bridge's 5 ms window holds several


def batch_figures(metrics: str) -> tuple[float, float]:
    """(batch calls, votes in them) of CastVotes from the bridge's /metrics."""
    def sample(name: str) -> float:
        label = re.escape('{method="agora.polls.v1.PollService.CastVotes"}')
        found = re.search(rf"^agora_bridge_batch_size_{name}{label} (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    return sample("count"), sample("sum")


class BatchedVotes(Votes):
    name, invariant = "batched votes", "acknowledged == counted once, in batches"

    async def run(self, stop: asyncio.Event, pause: float = 0.0) -> None:
        async def voter(v: int) -> None:
            n = 0
            while not stop.is_set():
                key = f"b{v}-{n}-{uid()}"
                body = {"option": (v + n) % 3, "voter_key": key, "request_id": key}
                answer = await send_until_accepted(self.http, "POST", f"/v1/polls/{self.poll_id}/votes", body,
                                                   stop)
                if answer is not None:
                    self.accepted.append(key)
                n += 1

        await asyncio.gather(*(voter(v) for v in range(VOTERS)))


@pytest.mark.parametrize(("fault", "seconds"), [("sigkill-polls", 1.0), ("rabbitmq-restart", 4.0)])
async def test_batched_votes_survive(fault_mesh, fault, seconds):
    limits = httpx.Limits(max_connections=VOTERS * 2)
    async with httpx.AsyncClient(base_url=fault_mesh.base_url, timeout=15, limits=limits) as http:
        before = batch_figures((await http.get("/metrics")).text)
        load = BatchedVotes(http)
        await load.prepare()
        stop = asyncio.Event()
        writer = asyncio.create_task(load.run(stop))
        started = time.monotonic()
        try:
            await asyncio.sleep(1.0)  # batches before the fault
            await _fault(fault, seconds)(fault_mesh)
            await asyncio.sleep(1.5)  # and after recovery
        finally:
            stop.set()
            await asyncio.wait_for(writer, 120)
        assert load.accepted, "nothing was accepted: the workload never ran"
        outcome = await load.check()
        calls, votes = (a - b for a, b in zip(batch_figures((await http.get("/metrics")).text), before))
        assert votes >= len(load.accepted) and calls < votes, f"{calls} batch calls for {votes} votes"
        RESULTS.append((fault, load.name, load.invariant,
                        f"ok: {outcome}, {votes:.0f} calls in {calls:.0f} batches "
                        f"({time.monotonic() - started:.0f} s)"))
