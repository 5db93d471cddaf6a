"""A real mesh behind the CLI tests: `agora up` on free ports with a temporary data dir, and `agora` runs."""

from __future__ import annotations

import json
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.meshproc import AGORA, ROOT, start_up, wait_for_line  # noqa: F401  (re-exported to the CLI tests)


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
        return subprocess.run([*AGORA, *args], env=self.env(**env), cwd=ROOT, input=input,
                              capture_output=True,
                              text=True, timeout=timeout)

    def json(self, *args: str, config: Path | None = None, **env: str):
        out = self.run(*args, "--json", config=config, **env)
        assert out.returncode == 0, \
            f"agora {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
        return json.loads(out.stdout)


OPERATOR_KEY = "cli-operator-key"  # the mesh's service credential, which an operator's CLI sends


@pytest.fixture(scope="session")
def mesh(tmp_path_factory) -> Mesh:
    up = start_up(tmp_path_factory.mktemp("cli-mesh"), AGORA_LOG_LEVEL="WARNING",
                  AGORA_SERVICE_API_KEY=OPERATOR_KEY)
    yield Mesh(up.offset, up.http_port, up.data, up.proc)
    up.stop()


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
