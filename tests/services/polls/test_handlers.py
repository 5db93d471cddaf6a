"""The tally consumer as a process of its own (`python -m services.polls.handlers`), as the
polls-tally Deployment runs it: real backends, grpc.health.v1, /metrics, SIGTERM.

The polls server runs with run_tally=False; the process is the only consumer of the test's group,
so every vote counted was counted by it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from agora.polls.v1 import polls_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.health import LIVENESS
from services.polls.handlers import READINESS, health_port, main
from tests.services.polls.conftest import bearer, start_mesh, unique
from tests.services.polls.test_service import counts, wait_results

ROOT = Path(__file__).resolve().parents[3]
SERVING = health_pb2.HealthCheckResponse.SERVING
GRACE = 4.0


def free_port() -> int:
    """A free port below the ephemeral range (an outgoing connection cannot take it meanwhile)."""
    for _ in range(200):
        port = random.randrange(12000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


class TallyProcess:
    def __init__(self, mesh, group: str) -> None:
        self.port, self.metrics_port = free_port(), free_port()
        self.args = [sys.executable, "-m", "services.polls.handlers", "--schema", mesh.schema,
                     "--mongo-db", mesh.mongo_db, "--group", group]
        self.env = dict(os.environ, AGORA_BACKENDS="real", AGORA_GRPC_PORT=str(self.port),
                        AGORA_METRICS_PORT=str(self.metrics_port), AGORA_HOST="127.0.0.1",
                        AGORA_HEALTH_INTERVAL="0.3", AGORA_SHUTDOWN_GRACE=str(GRACE), AGORA_LOG_FORMAT="text",
                        AGORA_LOG_LEVEL="WARNING")
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, text=True)
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        assert line.strip() == "tally consumer ready", (line, self.proc.poll())

    async def health(self, service: str) -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=3)
            return reply.status

    async def terminate(self) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, 30)
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
async def apart(postgres_url, mongo_url, amqp_url, tmp_path):
    """A polls server without the consumer, and the consumer's process for its group."""
    group = unique("tally").replace("_", "-")
    mesh, stop = await start_mesh("real", tmp_path, run_tally=False, gateway=False, group=group)
    processes: list[TallyProcess] = []

    def process() -> TallyProcess:
        processes.append(TallyProcess(mesh, group))
        return processes[-1]

    try:
        yield mesh, process
    finally:
        for p in processes:
            p.kill()
        await stop()  # deletes the group's queues, drops the schema and the database


async def test_the_consumer_alone_answers_health_counts_votes_and_stops_on_sigterm(apart):
    mesh, process = apart
    assert mesh.spec.consumer is None  # the polls server counts nothing itself
    tally = process()
    await tally.start()
    for service in (READINESS, "", LIVENESS):
        assert await tally.health(service) == SERVING, service

    poll = (await mesh.stub.CreatePoll(pb.CreatePollRequest(question="apart?", options=["yes", "no"]),
                                       metadata=bearer("ann"), timeout=5)).poll
    await asyncio.gather(*(mesh.stub.CastVote(
        pb.CastVoteRequest(poll_id=poll.id, option=i % 2, voter_key=f"v{i}"), timeout=10) for i in range(9)))
    await wait_results(mesh, poll.id, lambda r: counts(r) == [5, 4], what="votes counted by the process")

    with urllib.request.urlopen(f"http://127.0.0.1:{tally.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    assert "agora_bus_consumed_total" in text and "process_cpu_seconds_total" in text

    code, seconds = await tally.terminate()
    assert code == 0
    assert seconds < GRACE, f"SIGTERM took {seconds:.1f} s"


async def test_votes_in_flight_at_sigterm_are_counted_once_by_the_next_consumer(apart):
    mesh, process = apart
    first = process()
    await first.start()
    poll = (await mesh.stub.CreatePoll(pb.CreatePollRequest(question="handover", options=["a", "b", "c"]),
                                       metadata=bearer("ann"), timeout=5)).poll
    total = 600

    async def vote(i: int) -> None:
        await asyncio.sleep(i * 0.002)  # spread over ~1.2 s, so SIGTERM lands mid-stream
        await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll.id, option=i % 3, voter_key=f"v{i}"),
                                 timeout=20)

    votes = asyncio.gather(*(vote(i) for i in range(total)))
    await asyncio.sleep(0.5)
    code, _ = await first.terminate()
    assert code == 0
    await votes
    second = process()
    await second.start()
    reply = await wait_results(mesh, poll.id, lambda r: r.total_votes >= total, what="every vote counted")
    assert counts(reply.results) == [200, 200, 200]
    await asyncio.sleep(0.5)  # nothing more arrives: no vote counted twice
    reply = await mesh.stub.GetPoll(pb.GetPollRequest(poll_id=poll.id), timeout=5)
    assert counts(reply.results) == [200, 200, 200]
    code, _ = await second.terminate()
    assert code == 0


def test_health_port_defaults_to_the_polls_port_plus_100():
    from services.kit.config import Settings

    assert health_port(Settings.from_env({})) == 50152
    assert health_port(Settings.from_env({"AGORA_PORT_OFFSET": "1000"})) == 51152
    assert health_port(Settings.from_env({"AGORA_GRPC_PORT": "7000"})) == 7000


async def test_the_consumer_alone_refuses_embedded_backends(monkeypatch, capsys):
    monkeypatch.setenv("AGORA_BACKENDS", "embedded")
    assert await main([]) == 2
    assert "AGORA_BACKENDS=real" in capsys.readouterr().err
