"""The whole mesh as `agora up` starts it (embedded), once for the seed-contract tests.

Each test module here is a client of one seed system, written from that seed's README and public
repository, speaking its protocol exactly: it asserts keys, types and status codes as the seed's own
clients read them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_mesh_ports

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Mesh:
    http_port: int
    offset: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}"


def start_up(data: Path, **env_extra: str) -> tuple[subprocess.Popen, Mesh]:
    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_BACKENDS": "embedded", **env_extra}
    log_path = data / "up.log"
    log = open(log_path, "w+")
    proc = subprocess.Popen([sys.executable, "-m", "agora.cli", "up", "--data-dir", str(data)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 60
    while "ready" not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"agora up did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc, Mesh(http_port, offset, log_path)


def stop_up(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="package")
def mesh(tmp_path_factory):
    proc, m = start_up(tmp_path_factory.mktemp("seeds"))
    yield m
    stop_up(proc)
