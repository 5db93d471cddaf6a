"""AGORA_SEED_PORTS: the bridge also listens on the seeds' own ports, so a seed client needs no change at
all, not even its base URL: 3080 (GoBid, `cmd/api/main.go`), 8081-8083 (the three-database shop's
storage, orders and log services, each with its `/docs`)."""

from __future__ import annotations

import httpx
import pytest

from tests.meshproc import start_up
from tests.seeds.conftest import Mesh

SEED_PORTS = (3080, 8081, 8082, 8083)


@pytest.fixture(scope="module")
def seed_mesh(tmp_path_factory):
    up = start_up(tmp_path_factory.mktemp("seed-ports"), AGORA_SEED_PORTS="true")
    yield Mesh(up)
    up.stop()


async def test_every_seed_port_answers_its_seeds_routes(seed_mesh):
    async with httpx.AsyncClient(timeout=10.0) as http:
        gobid = await http.get("http://127.0.0.1:3080/api/v1/csrftoken")
        assert gobid.status_code == 200 and set(gobid.json()) == {"csrf_token"}
        for port in SEED_PORTS[1:]:
            docs = await http.get(f"http://127.0.0.1:{port}/docs/")
            assert docs.status_code == 200, port
        storage = await http.get("http://127.0.0.1:8081/api/products")
        assert storage.status_code == 200 and isinstance(storage.json(), list)
        orders = await http.get("http://127.0.0.1:8082/api/orders")
        assert orders.status_code == 200 and isinstance(orders.json(), list)
        log = await http.post("http://127.0.0.1:8083/api/log/event", json={"type": "web.visit", "key": "k"})
        assert log.status_code == 200, log.text
        own = await http.get(f"{seed_mesh.base_url}/health")  # the bridge's own port still serves
        assert own.status_code == 200
