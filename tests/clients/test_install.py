"""The client distribution installs and works on its own: no services/, no gateway/ in a fresh venv.

The venv is cached under pytest's cache dir (created once, with the dependencies); each run
reinstalls only agora-client itself, from a copy of clients/python so nothing else of the repo
is reachable.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.conftest import ROOT


@pytest.fixture(scope="module")
def client_venv(request, tmp_path_factory) -> Path:
    venv = Path(request.config.cache.mkdir("agora-client-venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "setuptools>=68", "wheel"], check=True,
                       timeout=300)
        deps = ["grpcio>=1.60", "protobuf>=5.26", "googleapis-common-protos>=1.63", "grpcio-status>=1.60",
                "grpcio-health-checking>=1.60", "rich>=13"]
        subprocess.run([str(python), "-m", "pip", "install", "-q", *deps], check=True, timeout=600)
    source = tmp_path_factory.mktemp("client-src") / "python"
    shutil.copytree(ROOT / "clients" / "python", source,
                    ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    out = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-build-isolation",
                          "--force-reinstall", "--no-deps", str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    # the declared dependencies are all there (a new one would need the cached venv rebuilt)
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    return venv


def test_the_client_imports_without_the_server_code(client_venv: Path, tmp_path: Path):
    script = (
        "import importlib.util, agora.client, agora.client.aio, agora.cli\n"
        "from agora.polls.v1 import polls_pb2_grpc\n"
        "from agora.client import Agora\n"
        "assert importlib.util.find_spec('services') is None, 'services/ leaked into the client install'\n"
        "assert importlib.util.find_spec('gateway') is None, 'gateway/ leaked into the client install'\n"
        "import agora, pathlib\n"
        "root = pathlib.Path(agora.__file__).parent\n"
        "assert (root / 'py.typed').exists() and (root / 'polls/v1/polls_pb2.pyi').exists()\n"
        "assert 'site-packages' in str(root), root\n"
        "print(type(Agora('h').polls).__name__)\n"
    )
    out = subprocess.run([str(client_venv / "bin" / "python"), "-c", script], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ServiceClient"


def test_the_agora_command_runs_from_the_client_install(client_venv: Path, tmp_path: Path):
    agora = str(client_venv / "bin" / "agora")
    helped = subprocess.run([agora, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0, helped.stderr
    for verb in ("login", "polls", "auctions", "chat", "orders", "events", "health"):
        assert verb in helped.stdout
    events = subprocess.run([agora, "events", "--help"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert "tail" in events.stdout and "dead-letters" not in events.stdout  # that one needs the server side
    up = subprocess.run([agora, "up", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "not installed" in up.stdout
    down = subprocess.run([agora, "polls", "list", "--target", "127.0.0.1:1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 3 and "UNAVAILABLE" in down.stderr
