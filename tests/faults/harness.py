"""The fault harness: the mesh as separate processes (`agora serve <domain>`, one per domain, and the
bridge) against the real servers, with names unique to the run, and the faults a test injects.

Isolation: a PostgreSQL database, a MongoDB database, a Cassandra keyspace and a RabbitMQ vhost of
its own (so no other test's consumers see its events), a free port range, a temporary data dir.
Everything is dropped in `close()`. Every fault is undone in a `finally` and verified (the server
answers again) before the test ends: CI runs on this machine against the servers as left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.config import Settings
from services.kit.registry import DOMAINS
from tests.ports import free_mesh_ports
from tests.realservers import answers
from tests.security.mesh import rss_kb

ROOT = Path(__file__).resolve().parents[2]


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


class FaultMesh:
    def __init__(self, workdir: Path) -> None:
        self.run_id = uuid.uuid4().hex[:8]
        self.name = f"agora_faults_{self.run_id}"
        self.vhost = f"agora-faults-{self.run_id}"
        self.workdir = workdir
        self.offset, self.http_port = free_mesh_ports()
        base = Settings.from_env()
        self.base = base
        self.postgres_url = _with_path(base.postgres_url, f"/{self.name}")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
        self.env.update({
            "AGORA_BACKENDS": "real", "AGORA_PORT_OFFSET": str(self.offset),
            "AGORA_HTTP_PORT": str(self.http_port),
            "AGORA_DATA_DIR": str(workdir / "data"), "AGORA_POSTGRES_URL": self.postgres_url,
            "AGORA_MONGO_URL": base.mongo_url, "AGORA_MONGO_DB": self.name,
            "AGORA_CASSANDRA_KEYSPACE": self.name,
            "AGORA_CASSANDRA_CONTACT_POINTS": base.cassandra_contact_points,
            "AGORA_CASSANDRA_PORT": str(base.cassandra_port),
            "AGORA_CASSANDRA_PROTOCOL_VERSION": str(base.cassandra_protocol_version),
            "AGORA_AMQP_URL": _with_path(base.amqp_url, f"/{self.vhost}"),
            "AGORA_LOGIN_RATE": "0", "AGORA_WRITE_RATE": "0", "AGORA_LOG_FORMAT": "json",
            "AGORA_METRICS_PORT": "-1",
            "AGORA_SMTP_PORT": "1", "AGORA_PAYMENTS_RETRY_DELAY": "0.2", "AGORA_SHUTDOWN_GRACE": "1",
            # one process per domain: they share the service credential, as a cluster's Secret gives it
            "AGORA_SERVICE_API_KEY": f"faults-{uuid.uuid4().hex}", "AGORA_MAIL_SINK": "smtp",
        })
        self.procs: dict[str, subprocess.Popen] = {}

    # -- lifecycle

    def create_resources(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self.base.postgres_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{self.name}"')
        conn.close()
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True,
                       timeout=60)
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True, timeout=60)

    def start(self, domains=tuple(DOMAINS)) -> FaultMesh:
        self.create_resources()
        for name in domains:
            self.start_process(name)
        self.start_process("gateway")
        return self

    def start_process(self, name: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "agora.cli", "serve", name], cwd=ROOT,
                                            env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited {proc.returncode}:\n{self.log(name)[-3000:]}")
            if name == "gateway" and self._port_open(self.http_port):
                return
            if name != "gateway" and self.serving(name):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{name} not SERVING after {timeout} s:\n{self.log(name)[-3000:]}")

    @staticmethod
    def _port_open(port: int) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    def serving(self, name: str) -> bool:
        try:
            with grpc.insecure_channel(self.target(name)) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
                return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def target(self, name: str) -> str:
        return f"127.0.0.1:{DOMAINS[name].port + self.offset}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def rss_kb(self) -> dict[str, int]:
        return {n: rss_kb(p.pid) for n, p in self.procs.items() if p.poll() is None}

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no goodbye (what an OOM kill or a node loss does)."""
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.drop_resources()

    def drop_resources(self) -> None:
        with contextlib.suppress(Exception):
            import psycopg2

            conn = psycopg2.connect(self.base.postgres_url)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.close()
        with contextlib.suppress(Exception):
            import pymongo

            pymongo.MongoClient(self.base.mongo_url, serverSelectionTimeoutMS=5000).drop_database(self.name)
        with contextlib.suppress(Exception):
            from cassandra.cluster import Cluster

            cluster = Cluster(self.base.cassandra_contact_points.split(","), port=self.base.cassandra_port,
                              protocol_version=self.base.cassandra_protocol_version)
            session = cluster.connect()
            session.execute(f"DROP KEYSPACE IF EXISTS {self.name}", timeout=60)
            cluster.shutdown()
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True, timeout=60)


# -- faults: each injects, waits `seconds`, then undoes and verifies in a finally


async def _until(check, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come back within {timeout} s")
        await asyncio.sleep(0.5)


def _run(*cmd: str, timeout: float = 120) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, timeout=timeout)


async def rabbitmq_down(seconds: float):
    _run("rabbitmqctl", "stop_app")
    try:
        await asyncio.sleep(seconds)
    finally:
        _run("rabbitmqctl", "start_app")
        await _until(lambda: answers("rabbitmq"), "RabbitMQ")


async def postgres_down(seconds: float):
    """Stop the postmaster on 5432 and start it again with its own data dir and options, whoever
    started it (services.sh's pg_ctl, or a Debian cluster)."""
    pid = _pid_of(b"postgres", b"-D")
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    data = argv[argv.index("-D") + 1]
    options = " ".join(argv[argv.index("-D") + 2:])
    ctl = str(Path(argv[0]).with_name("pg_ctl"))
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    _run(*as_postgres, ctl, "-D", data, "-m", "fast", "-w", "stop")
    try:
        await asyncio.sleep(seconds)
    finally:
        _run(*as_postgres, ctl, "-D", data, "-w", "-t", "60", "-l", f"{data}/../postgres.log", "-o", options,
             "start")
        await _until(lambda: answers("postgres"), "PostgreSQL")


async def mongodb_down(seconds: float):
    """Stop mongod and start it again with the very command line it runs with (services.sh's, --fork)."""
    pid = _pid_of(b"mongod", b"27017")
    argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")]
    os.kill(pid, signal.SIGTERM)
    try:
        await _until(lambda: not Path(f"/proc/{pid}").exists(), "mongod exit", 60)
        await asyncio.sleep(seconds)
    finally:
        if not answers("mongodb"):
            result = subprocess.run(argv, capture_output=True, timeout=120)
            if result.returncode != 0:
                raise AssertionError(f"mongod did not start again: {argv}\n{result.stdout[-2000:]!r}")
        await _until(lambda: answers("mongodb"), "MongoDB")
        await _until(_mongo_primary, "MongoDB primary", 60)


def _pid_of(program: bytes, marker: bytes) -> int:
    """The running server whose argv[0] ends with `program` and whose command line mentions `marker`."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(program) and any(marker in a for a in argv):
            return int(proc.name)
    raise AssertionError(f"no running {program.decode()} found")


def _pid_listening(port: int) -> int:
    """The process with a TCP socket listening on `port` (/proc/net/tcp*, then whose fd holds it), so
    the fault hits the server the settings name even when another one runs on the same machine."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
    raise AssertionError(f"no process listens on port {port}")


def _mongo_primary() -> bool:
    import pymongo

    try:
        client = pymongo.MongoClient("mongodb://127.0.0.1:27017/?directConnection=true",
                                     serverSelectionTimeoutMS=1000)
        return bool(client.admin.command("hello").get("isWritablePrimary"))
    except Exception:
        return False


async def cassandra_frozen(seconds: float):
    """SIGSTOP / SIGCONT: Cassandra stops answering without losing its state (a long GC pause, a hung
    node). The JVM is the one listening on the configured CQL port (the pid services.sh records in
    its cassandra5/cassandra.pid). A full restart is slower; the soak does it."""
    pid = _pid_listening(Settings.from_env().cassandra_port)
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
        await _until(lambda: answers("cassandra"), "Cassandra")


async def process_killed(mesh: FaultMesh, name: str, seconds: float):
    mesh.kill(name)
    try:
        await asyncio.sleep(seconds)
    finally:
        await asyncio.to_thread(mesh.start_process, name)
