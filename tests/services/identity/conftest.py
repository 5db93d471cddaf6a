"""The identity tests' mesh: identity + auctions + the bridge, once per module per backend."""

from __future__ import annotations

import pytest

from tests.services.identity.harness import start_mesh, stop_mesh


@pytest.fixture(scope="module", params=["embedded", "real"])
async def mesh(request, tmp_path_factory):
    urls = {}
    if request.param == "real":
        urls = {"postgres_url": request.getfixturevalue("postgres_url"),
                "amqp_url": request.getfixturevalue("amqp_url")}
    m = await start_mesh(request.param, tmp_path_factory.mktemp("identity"), **urls)
    try:
        yield m
    finally:
        await stop_mesh(m)
