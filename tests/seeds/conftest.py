"""The whole mesh as `agora up` starts it (embedded), once for the seed-contract tests.

Each test module here is a client of one seed system, written from that seed's README and public
repository, speaking its protocol exactly: it asserts keys, types and status codes as the seed's own
clients read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.meshproc import UpProcess, start_up


@dataclass
class Mesh:
    up: UpProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.up.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.up.http_port}"


@pytest.fixture(scope="package")
def mesh(tmp_path_factory):
    up = start_up(tmp_path_factory.mktemp("seeds"))
    yield Mesh(up)
    up.stop()
