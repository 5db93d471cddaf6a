"""`--workers N`: several bridge processes on one SO_REUSEPORT port under one supervisor
(gateway/workers.py), run as real processes against the Mirror gRPC server.

Which worker answered is the `x-agora-worker` response header (uvicorn's default headers, set only
under --workers). Orphans are found by a marker in the environment every process of one run
inherits (the workers, multiprocessing's resource tracker), read from /proc.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.gateway.mirror_server import SERVICE, Messages, MirrorService, start_server

ROOT = Path(__file__).resolve().parents[2]
MARK = "AGORA_TEST_WORKERS_RUN"
ROUTE = "agora.testing.v1.Mirror.GetSample"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT pools are Linux")


@dataclass
class Pool:
    proc: subprocess.Popen
    mark: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text()


def _marked(mark: str) -> set[int]:
    """Live (not zombie) processes whose environment carries MARK=mark."""
    found = set()
    needle = f"{MARK}={mark}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.add(int(entry))
    return found


def _workers(pool: Pool) -> set[int]:
    """The pool's worker processes now (the supervisor's spawned children, not its resource tracker)."""
    pids = set()
    for pid in _marked(pool.mark) - {pool.proc.pid}:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == pool.proc.pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.add(pid)
    return pids


async def _eventually(check, what: str, *, attempts: int = 600) -> None:
    """Poll `check` (a hang guard of about a minute, not a timing assertion)."""
    for _ in range(attempts):
        if check():
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"never happened: {what}")


async def _start(argv: list[str], tmp_path: Path, *, expect_ready: bool = True,
                 env: dict[str, str] | None = None) -> Pool:
    mark = uuid.uuid4().hex
    log = tmp_path / f"{mark}.log"
    env = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, MARK: mark,
           "AGORA_LOG_FORMAT": "text", **(env or {})}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    pool = Pool(proc, mark, 0, log)
    if not expect_ready:
        return pool
    await _eventually(lambda: "ready" in pool.output() or proc.poll() is not None, "the pool started")
    if proc.poll() is not None:
        pytest.fail(f"the pool did not start:\n{pool.output()[-3000:]}")
    pool.port = int(re.search(r"http://127\.0\.0\.1:(\d+)", pool.output()).group(1))
    return pool


async def _stop(pool: Pool) -> int:
    if pool.proc.poll() is None:
        pool.proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(pool.proc.wait, 60)


async def _answers(pool: Pool, count: int) -> list[httpx.Response]:
    """`count` requests through the bridge to the Mirror, each on a fresh connection."""
    replies = []
    for i in range(count):
        async with httpx.AsyncClient(base_url=pool.url, timeout=10.0) as client:
            replies.append(await client.get(f"/v1/samples/s{i}"))
    return replies


@pytest.fixture(scope="module")
async def upstream(descriptor_set, tmp_path_factory):
    server, port = await start_server(MirrorService(Messages(descriptor_set)))
    descriptors = tmp_path_factory.mktemp("workers") / "mirror.binpb"
    descriptors.write_bytes(descriptor_set)
    yield descriptors, f"127.0.0.1:{port}"
    await server.stop(0)


def _bridge_argv(upstream, *more: str) -> list[str]:
    descriptors, target = upstream
    return ["-m", "gateway", "--descriptors", str(descriptors), "--upstream", f"{SERVICE}={target}",
            "--host", "127.0.0.1", *more]


@pytest.fixture(scope="module")
async def pool(upstream, tmp_path_factory):
    started = await _start(_bridge_argv(upstream, "--port", "0", "--workers", "2"),
                           tmp_path_factory.mktemp("pool"))
    yield started
    await _stop(started)


async def test_two_workers_on_one_port_both_answer_through_the_upstream(pool):
    assert len(_workers(pool)) == 2
    replies = await _answers(pool, 40)
    assert [r.status_code for r in replies] == [200] * 40
    assert [r.json()["name"] for r in replies] == [f"s{i}" for i in range(40)]
    assert {r.headers["x-agora-worker"] for r in replies} == {"0", "1"}


async def test_metrics_on_any_worker_count_every_workers_requests(pool):
    pattern = re.compile(rf'agora_http_request_duration_seconds_count\{{[^}}]*route="{re.escape(ROUTE)}"'
                         rf'[^}}]*\}} ([0-9.e+]+)')

    async def counted() -> tuple[float, str]:
        async with httpx.AsyncClient(base_url=pool.url, timeout=10.0) as client:
            page = await client.get("/metrics")
        return sum(float(v) for v in pattern.findall(page.text)), page.headers["x-agora-worker"]

    before, _ = await counted()
    replies = await _answers(pool, 20)
    assert len({r.headers["x-agora-worker"] for r in replies}) == 2
    seen = {}
    for _ in range(20):  # fresh connections: the page from each worker
        total, worker = await counted()
        seen[worker] = total
    assert seen == {"0": before + 20, "1": before + 20}


async def test_a_killed_worker_is_replaced_and_the_port_keeps_answering(pool):
    first = _workers(pool)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    await _eventually(lambda: victim not in _workers(pool), "the killed worker was reaped")
    assert [r.status_code for r in await _answers(pool, 10)] == [200] * 10
    await _eventually(lambda: len(_workers(pool)) == 2, "a new worker was started")
    assert victim not in _workers(pool)
    await _eventually(lambda: "serving again" in pool.output(), "the new worker serves")
    replies = await _answers(pool, 40)
    assert [r.status_code for r in replies] == [200] * 40
    assert {r.headers["x-agora-worker"] for r in replies} == {"0", "1"}
    assert "exited unexpectedly with signal SIGKILL" in pool.output()
    assert pool.proc.poll() is None


async def test_sigterm_stops_every_worker_and_exits_0(upstream, tmp_path):
    started = await _start(_bridge_argv(upstream, "--port", "0", "--workers", "2"), tmp_path)
    workers = _workers(started)
    assert len(workers) == 2
    assert (await _answers(started, 1))[0].status_code == 200
    assert await _stop(started) == 0
    await _eventually(lambda: not _marked(started.mark), "every process of the pool ended")
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


async def test_a_given_metrics_directory_is_emptied_of_an_earlier_runs_files(upstream, tmp_path):
    """A pod's metrics emptyDir outlives a container killed outright: its workers' files must not
    go on being counted (their gauges would say requests are still in flight)."""
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "gauge_livesum_999999.db"
    stale.write_bytes(b"\0" * 8)
    started = await _start(_bridge_argv(upstream, "--port", "0", "--workers", "2"), tmp_path,
                           env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        assert not stale.exists()
        async with httpx.AsyncClient(base_url=started.url, timeout=10.0) as client:
            page = await client.get("/metrics")
        assert page.status_code == 200 and "agora_http_requests_active" in page.text
    finally:
        assert await _stop(started) == 0
    assert metrics_dir.exists(), "a directory it was given is left in place"


async def test_agora_serve_gateway_takes_its_workers_from_the_environment(tmp_path):
    env_port = _free_port()
    started = await _start(["-m", "agora.cli", "serve", "gateway"], tmp_path,
                           env={"AGORA_HTTP_PORT": str(env_port), "AGORA_GATEWAY_WORKERS": "2"})
    assert started.port == env_port
    replies = []
    for _ in range(30):
        async with httpx.AsyncClient(base_url=started.url, timeout=10.0) as client:
            replies.append(await client.get("/livez"))
    assert [r.status_code for r in replies] == [200] * 30
    assert {r.headers["x-agora-worker"] for r in replies} == {"0", "1"}
    assert started.output().count("ready; Ctrl-C or SIGTERM stops") == 1
    assert await _stop(started) == 0
    await _eventually(lambda: not _marked(started.mark), "every process of the pool ended")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_port_held_without_reuseport_fails_the_command_clearly(upstream, tmp_path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(8)
    port = holder.getsockname()[1]
    try:
        started = await _start(_bridge_argv(upstream, "--port", str(port), "--workers", "2"), tmp_path,
                               expect_ready=False)
        assert await asyncio.to_thread(started.proc.wait, 60) == 1
    finally:
        holder.close()
    said = started.output()
    assert f"cannot listen on 127.0.0.1:{port}" in said
    assert "SO_REUSEPORT" in said and "Traceback" not in said
    await _eventually(lambda: not _marked(started.mark), "no process of the pool is left")


async def test_a_worker_that_cannot_start_fails_the_command_and_stops_the_others(upstream, tmp_path):
    descriptors = tmp_path / "broken.binpb"
    descriptors.write_bytes(b"this is not a FileDescriptorSet")
    _, target = upstream
    started = await _start(["-m", "gateway", "--descriptors", str(descriptors), "--upstream",
                            f"{SERVICE}={target}", "--port", "0", "--workers", "2"], tmp_path,
                           expect_ready=False)
    assert await asyncio.to_thread(started.proc.wait, 60) == 1
    assert re.search(r"python -m gateway: gateway worker \d could not start: ", started.output())
    await _eventually(lambda: not _marked(started.mark), "no process of the pool is left")
