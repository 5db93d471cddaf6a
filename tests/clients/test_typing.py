"""mypy --strict passes on the example program that uses the typed client (and on the client itself)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.clients.conftest import ROOT


def test_mypy_strict_on_the_example_and_the_client():
    env = {**os.environ, "MYPYPATH": str(ROOT / "clients" / "python")}
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "examples/shop.py",
         "clients/python/agora/client"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_catches_a_wrong_field_type(tmp_path):
    wrong = tmp_path / "wrong.py"
    wrong.write_text(
        "from agora.client import Agora\n"
        "from agora.polls.v1 import polls_pb2\n"
        "reply = Agora().polls.GetPoll(polls_pb2.GetPollRequest(poll_id='x'))\n"
        "count: str = reply.results.total_votes\n"
    )
    env = {**os.environ, "MYPYPATH": str(ROOT / "clients" / "python")}
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", str(wrong)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 1 and "Incompatible types in assignment" in out.stdout, out.stdout
