"""Exactness under faults: votes stream in while RabbitMQ restarts and the tally consumer is killed.

Used by test_faults.py (scaled down for CI) and bench/polls_faults.py (the full 20,000 votes from
2,000 voters). The invariant: final tallies (live in MongoDB, consolidated in PostgreSQL) equal the
votes CastVote accepted, exactly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from agora.polls.v1 import polls_pb2 as pb

from tests.services.polls.conftest import bearer, start_mesh, unique

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class FaultReport:
    accepted: int = 0
    refused: Counter = field(default_factory=Counter)
    broker_restarted_at: int = 0
    consumer_killed_at: int = 0
    seconds: float = 0.0
    mismatches: list[str] = field(default_factory=list)


def rabbitmqctl(action: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        raise RuntimeError("rabbitmqctl is not on PATH: cannot restart the broker")
    subprocess.run([ctl, action], check=True, capture_output=True, timeout=120)


class ConsumerProcess:
    """`python -m services.polls.handlers` against the scenario's schema, database and group."""

    def __init__(self, schema: str, mongo_db: str, group: str) -> None:
        self.args = [sys.executable, "-m", "services.polls.handlers", "--schema", schema,
                     "--mongo-db", mongo_db, "--group", group]
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        env = dict(os.environ, AGORA_BACKENDS="real", AGORA_LOG_LEVEL="WARNING", AGORA_LOG_FORMAT="text")
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        if "ready" not in line:
            raise RuntimeError(f"the tally consumer did not start: {line!r}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def run(tmp: Path, *, voters: int, polls: int = 10, concurrency: int = 48, seconds: float = 10.0,
              settle_timeout: float = 120.0) -> FaultReport:
    """`voters` voters each vote once in each of `polls` polls (ONE_PER_VOTER_KEY; the last poll
    allows changing a vote, and every fifth voter changes theirs once, and repeats it, which is
    refused). Votes are paced over `seconds`, so the faults land mid-stream: the broker restarts
    at ~20 % of the votes, the consumer is SIGKILLed at ~50 %."""
    report = FaultReport()
    group = unique("faults").replace("_", "-")
    mesh, stop = await start_mesh("real", tmp, run_tally=False, gateway=False, group=group)
    consumer = ConsumerProcess(mesh.schema, mesh.mongo_db, group)
    started = time.monotonic()
    try:
        await consumer.start()
        stub = mesh.stub
        poll_ids = []
        for p in range(polls):
            poll = (await stub.CreatePoll(pb.CreatePollRequest(
                question=f"faults {p}", options=["a", "b", "c", "d"],
                vote_policy=pb.VOTE_POLICY_ONE_PER_VOTER_KEY, allow_change=(p == polls - 1)),
                metadata=bearer("owner"), timeout=10)).poll
            poll_ids.append(poll.id)
        choice: dict[tuple[str, str], int] = {}
        plan = [(poll_ids[(v + k) % polls], f"voter{v}", (v * 7 + k) % 4)
                for k in range(polls) for v in range(voters)]
        changes = [(poll_ids[-1], f"voter{v}", (v * 7 + polls - 1 + 1) % 4) for v in range(0, voters, 5)]
        plan += changes + changes  # the repeat names the option already chosen: ALREADY_EXISTS
        total = len(plan)
        queue = iter(enumerate(plan))
        pace_from = time.monotonic()

        async def voter() -> None:
            for i, (poll_id, key, option) in queue:
                await asyncio.sleep(max(0.0, pace_from + i * seconds / total - time.monotonic()))
                for attempt in range(20):
                    try:
                        await stub.CastVote(pb.CastVoteRequest(poll_id=poll_id, option=option, voter_key=key,
                                                               request_id=f"{key}-{i}"), timeout=30)
                        choice[(poll_id, key)] = option
                        report.accepted += 1
                        break
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() == grpc.StatusCode.UNAVAILABLE and attempt < 19:
                            await asyncio.sleep(0.2)  # the same request_id: a retry never counts twice
                            continue
                        report.refused[exc.code().name] += 1
                        break

        async def broker_restart() -> None:
            while report.accepted < total * 0.2:
                await asyncio.sleep(0.02)
            report.broker_restarted_at = report.accepted
            await asyncio.to_thread(rabbitmqctl, "stop_app")
            await asyncio.sleep(1.0)
            await asyncio.to_thread(rabbitmqctl, "start_app")

        async def consumer_kill() -> None:
            # On its own clock, not after the restart: rabbitmqctl may take longer than the voting.
            while report.accepted < total * 0.5:
                await asyncio.sleep(0.02)
            report.consumer_killed_at = report.accepted
            consumer.kill()
            await asyncio.sleep(0.5)
            await consumer.start()

        async def faults() -> None:
            await asyncio.gather(broker_restart(), consumer_kill())

        fault_task = asyncio.create_task(faults())
        try:
            await asyncio.gather(*(voter() for _ in range(concurrency)))
            await asyncio.wait_for(fault_task, 180)
        finally:
            if not fault_task.done():
                fault_task.cancel()
            await asyncio.to_thread(rabbitmqctl, "start_app")  # whatever happened, leave the broker up

        for poll_id in poll_ids:
            await stub.ClosePoll(pb.ClosePollRequest(poll_id=poll_id), metadata=bearer("owner"), timeout=10)
        expected = {p: Counter() for p in poll_ids}
        for (poll_id, _), option in choice.items():
            expected[poll_id][option] += 1
        deadline = time.monotonic() + settle_timeout
        pending = set(poll_ids)
        finals: dict[str, pb.PollResults] = {}
        while pending and time.monotonic() < deadline:
            for poll_id in list(pending):
                reply = await stub.GetPoll(pb.GetPollRequest(poll_id=poll_id), timeout=10)
                if reply.results.final:
                    finals[poll_id] = reply.results
                    pending.discard(poll_id)
            await asyncio.sleep(0.2)
        for poll_id in pending:
            report.mismatches.append(f"poll {poll_id}: no final results after {settle_timeout:.0f}s")
        tallies = await mesh.spec.servicer.tallies.load(poll_ids)
        for poll_id, results in finals.items():
            want = [expected[poll_id][i] for i in range(4)]
            consolidated = [t.votes for t in results.tallies]
            live = [tallies[poll_id].counts.get(i, 0) for i in range(4)]
            if consolidated != want or live != want:
                report.mismatches.append(
                    f"poll {poll_id}: accepted {want}, consolidated {consolidated}, live {live}")
    finally:
        report.seconds = time.monotonic() - started
        consumer.stop()
        await stop()
    return report
