"""`agora up` as a process on free ports, the way a user starts the whole mesh; shared by the tests
that drive it from outside (the CLI, the seed clients)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_mesh_ports

ROOT = Path(__file__).resolve().parents[1]
AGORA = [sys.executable, "-m", "agora.cli"]


@dataclass
class UpProcess:
    proc: subprocess.Popen
    offset: int
    http_port: int
    data: Path

    @property
    def log(self) -> Path:
        return self.data / "up.log"

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the mesh did not print {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def start_up(data: Path, **env_extra: str) -> UpProcess:
    """`agora up` (embedded backends unless `env_extra` says otherwise), returned once it is ready."""
    offset, http_port = free_mesh_ports()
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_BACKENDS": "embedded", **env_extra}
    log_path = data / "up.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*AGORA, "up", "--data-dir", str(data)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    wait_for_line(proc, log_path, "ready")
    return UpProcess(proc, offset, http_port, data)
