"""Session-wide fixtures: real-server checks (see tests/realservers.py) by marker."""

from __future__ import annotations

import pytest

from tests.browser import browser  # noqa: F401 - the session's one Chromium, for every browser test
from tests.realservers import require


@pytest.fixture(scope="session")
def postgres_url() -> str:
    from services.kit.config import Settings

    require("postgres")
    return Settings.from_env().postgres_url


@pytest.fixture(scope="session")
def amqp_url() -> str:
    from services.kit.config import Settings

    require("rabbitmq")
    return Settings.from_env().amqp_url


@pytest.fixture(scope="session")
def mongo_url() -> str:
    from services.kit.config import Settings

    require("mongodb")
    return Settings.from_env().mongo_url


@pytest.fixture(scope="session")
def cassandra_settings():
    from services.kit.config import Settings

    require("cassandra")
    return Settings.from_env()
