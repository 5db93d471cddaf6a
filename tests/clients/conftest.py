"""A real mesh behind the CLI tests: `agora up` on free ports with a temporary data dir, and `agora` runs."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_mesh_ports

ROOT = Path(__file__).resolve().parents[2]
AGORA = [sys.executable, "-m", "agora.cli"]



def wait_for_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the mesh did not print {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class Mesh:
    offset: int
    http_port: int
    data: Path
    proc: subprocess.Popen

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
        env.update({"AGORA_PORT_OFFSET": str(self.offset), "COLUMNS": "200", "NO_COLOR": "1"})
        env.update(extra)
        return env

    def run(self, *args: str, config: Path | None = None, input: str | None = None, timeout: float = 60,
            **env: str) -> subprocess.CompletedProcess:
        """`agora ARGS...` as a user would run it (a fresh process), with this mesh's ports."""
        if config is not None:
            env["AGORA_CONFIG"] = str(config)
        return subprocess.run([*AGORA, *args], env=self.env(**env), cwd=ROOT, input=input, capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str, config: Path | None = None, **env: str):
        out = self.run(*args, "--json", config=config, **env)
        assert out.returncode == 0, f"agora {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Mesh:
    offset, http_port = free_mesh_ports()
    data = tmp_path_factory.mktemp("cli-mesh")
    env = {**os.environ, "AGORA_PORT_OFFSET": str(offset), "AGORA_HTTP_PORT": str(http_port),
           "AGORA_LOG_FORMAT": "text", "AGORA_LOG_LEVEL": "WARNING", "AGORA_BACKENDS": "embedded"}
    log_path = data / "up.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*AGORA, "up", "--data-dir", str(data)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    wait_for_line(proc, log_path, "ready")
    yield Mesh(offset, http_port, data, proc)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def alice(mesh: Mesh, tmp_path_factory) -> Path:
    """A signed-up, signed-in user: the path of their config file (the saved session)."""
    config = tmp_path_factory.mktemp("alice") / "agora" / "config.toml"
    name = f"alice_{random.randrange(10**6)}"
    mesh.json("signup", name, "--email", f"{name}@example.com", "--password", "alice-password", config=config)
    out = mesh.run("login", name, "--password-stdin", config=config, input="alice-password\n")
    assert out.returncode == 0, out.stderr
    return config


@pytest.fixture(scope="session")
def bob(mesh: Mesh, tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("bob") / "config.toml"
    name = f"bob_{random.randrange(10**6)}"
    mesh.json("signup", name, "--email", f"{name}@example.com", "--password", "bob-password", config=config)
    mesh.json("login", name, "--password", "bob-password", config=config)
    return config
