"""The container image: the Dockerfile lints clean, and its install steps produce a working server.

There is no Docker engine on the build machines, so the test runs what the Dockerfile's build
stage runs — the same files copied by its COPY lines, then deployments/docker/install.sh —
into a fresh virtualenv, starts `agora serve polls`, asks grpc.health.v1 and sends SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.registry import DOMAINS
from tests.deployments.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
TOOLS_BIN = Path(os.environ.get("AGORA_TOOLS", "/opt/agora-tools")) / "bin"


def stages() -> dict[str, list[str]]:
    """Dockerfile instructions per stage name (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            current = line.split()[-1]
            result[current] = []
        elif current:
            result[current].append(line)
    return result


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(TOOLS_BIN / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: run tools/install-test-tools.sh"
    out = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, check=False, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_runtime_stage_is_non_root_without_compilers_and_runs_agora() -> None:
    s = stages()
    assert list(s) == ["build", "runtime"]
    runtime = s["runtime"]
    users = [i.split()[1] for i in runtime if i.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert not any(re.search(r"gcc|build-essential|apt-get install", i) for i in runtime)
    assert 'ENTRYPOINT ["agora"]' in runtime
    assert 'CMD ["serve", "gateway"]' in runtime
    assert any(i.startswith("COPY --from=build /opt/agora") for i in runtime)
    copies = " ".join(i for i in s["build"] if i.startswith("COPY"))
    assert "clients/python" in copies, "the generated stubs ship in the image"


def _build_context(dest: Path) -> Path:
    """Copy what the build stage's COPY lines copy, to where they copy it."""
    for instruction in stages()["build"]:
        if not instruction.startswith("COPY "):
            continue
        *sources, target = instruction.split()[1:]
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"the Dockerfile copies {source}, which does not exist"
            to = dest / target / src.name if target.endswith("/") else dest / target
            if src.is_dir():
                shutil.copytree(src, to, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
            else:
                to.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, to)
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(900)
def test_install_steps_give_a_server_that_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    run = [i for i in stages()["build"] if i.startswith("RUN ")]
    assert run == ["RUN ./deployments/docker/install.sh /opt/agora /src"], run
    src = _build_context(tmp_path / "src")
    venv = tmp_path / "venv"
    env = {**os.environ, "PYTHON": sys.executable, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        [str(src / "deployments/docker/install.sh"), str(venv), str(src)],
        cwd=src,
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=840,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    port = _free_port()
    server_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AGORA_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")
    }
    server_env.update(
        AGORA_GRPC_PORT=str(port),
        AGORA_HOST="127.0.0.1",
        AGORA_BACKENDS="embedded",
        AGORA_DATA_DIR=str(tmp_path / "data"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    # run from an empty directory, so nothing is imported from the checkout: only the install
    workdir = tmp_path / "run"
    workdir.mkdir()
    # the polls-tally Deployment's command: the virtualenv's python (first on the image's PATH)
    tally = subprocess.run([str(venv / "bin" / "python"), "-m", "services.polls.handlers", "--help"],
                           cwd=workdir,
                           env=server_env, capture_output=True, check=False, text=True, timeout=60)
    assert tally.returncode == 0 and "AGORA_POLLS_TALLY_IN_PROCESS" in tally.stdout, \
        tally.stdout + tally.stderr
    proc = subprocess.Popen(
        [str(venv / "bin" / "agora"), "serve", "polls"],
        cwd=workdir,
        env=server_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        status = None
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    status = stub.Check(
                        health_pb2.HealthCheckRequest(service=DOMAINS["polls"].service), timeout=2
                    ).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.3)
        assert status == health_pb2.HealthCheckResponse.SERVING, f"health: {status}; exit {proc.poll()}"

        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = proc.wait(timeout=10)
        assert time.monotonic() - started < 5, "SIGTERM took 5 s or more"
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        output = proc.communicate(timeout=10)[0]
        print(output[-4000:])
