"""No ERROR line in normal use: what counts as one, in a mesh process's log or in this process's.

`error_lines` reads a log file's text (JSON lines or text); the `no_error_logged` fixture fails a test
during which an in-process mesh (or anything else here) logged at ERROR or above — asyncio's "Task was
destroyed but it is pending!" and "aclose(): asynchronous generator is already running" included.
"""

from __future__ import annotations

import json
import logging

import pytest

MARKERS = ("Traceback", "Task was destroyed", "already running")


def error_lines(text: str) -> list[str]:
    bad = []
    for line in text.splitlines():
        try:
            level = json.loads(line).get("level", "")
        except (ValueError, AttributeError):
            level = ""
        if level in ("ERROR", "CRITICAL") or " ERROR " in line or any(m in line for m in MARKERS):
            bad.append(line)
    return bad


@pytest.fixture
def no_error_logged(caplog):
    caplog.set_level(logging.WARNING)
    yield
    bad = [f"{r.name}: {r.getMessage()}" for when in ("setup", "call", "teardown")
           for r in caplog.get_records(when) if r.levelno >= logging.ERROR]
    assert not bad, "ERROR lines logged in normal use:\n" + "\n".join(bad[:20])
