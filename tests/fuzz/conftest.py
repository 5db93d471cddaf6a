"""One embedded mesh with a small max message size, for bad input: schemathesis, raw frames, WebSocket
abuse."""

from __future__ import annotations

import pytest

from tests.security.mesh import Mesh

MAX_MESSAGE_BYTES = 256 * 1024


@pytest.fixture(scope="session")
def fuzz_mesh(tmp_path_factory):
    mesh = Mesh(tmp_path_factory.mktemp("fuzzmesh"), AGORA_MAX_MESSAGE_BYTES=str(MAX_MESSAGE_BYTES)).start()
    try:
        yield mesh
    finally:
        mesh.stop_clean()  # no ERROR in its log, its shutdown included
