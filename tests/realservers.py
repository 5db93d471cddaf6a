"""Reach the real servers tests need; under CI a missing server is a failure, elsewhere a skip.

Addresses come from the same settings the mesh reads (services.kit.config), so a developer
points the suite elsewhere with the same AGORA_* variables.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest

from services.kit.config import Settings

UNDER_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _address(kind: str, s: Settings) -> tuple[str, int]:
    if kind == "postgres":
        u = urlparse(s.postgres_url)
        return u.hostname or "127.0.0.1", u.port or 5432
    if kind == "rabbitmq":
        u = urlparse(s.amqp_url)
        return u.hostname or "127.0.0.1", u.port or 5672
    if kind == "mongodb":
        u = urlparse(s.mongo_url)
        host = (u.netloc.split(",")[0] or "127.0.0.1:27017").rsplit("@", 1)[-1]
        name, _, port = host.partition(":")
        return name, int(port or 27017)
    if kind == "cassandra":
        return s.cassandra_contact_points.split(",")[0], s.cassandra_port
    raise ValueError(kind)


def answers(kind: str, timeout: float = 1.0) -> bool:
    host, port = _address(kind, Settings.from_env())
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(kind: str) -> None:
    """Fail (CI) or skip (a laptop without the server) when `kind` does not answer."""
    if answers(kind):
        return
    host, port = _address(kind, Settings.from_env())
    message = f"{kind} does not answer on {host}:{port}; start it with `deployments/local/services.sh start`"
    if UNDER_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> str:
    """Debian's chromium for browser tests (tools/install-test-tools.sh installs it); fail under CI."""
    import shutil

    if shutil.which(CHROMIUM):
        return CHROMIUM
    message = f"no Chromium at {CHROMIUM}: run tools/install-test-tools.sh"
    if UNDER_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
