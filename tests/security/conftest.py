"""One prod-like embedded mesh (service API key set, rate limits off) for the security tests."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.security.mesh import Mesh


@pytest.fixture(scope="session")
def secure_mesh(tmp_path_factory):
    mesh = Mesh(tmp_path_factory.mktemp("secmesh")).start()
    try:
        yield mesh
    finally:
        mesh.stop_clean()  # no ERROR in its log, its shutdown included


@pytest.fixture
async def http(secure_mesh):
    async with httpx.AsyncClient(base_url=secure_mesh.base_url, timeout=30.0) as client:
        yield client


PASSWORD_PREFIX = "Pw-"


async def sign_up(http: httpx.AsyncClient) -> dict:
    """A new user; returns name, password, token, user_id and the login response's cookies."""
    name = f"u{uuid.uuid4().hex[:10]}"
    password = f"{PASSWORD_PREFIX}{uuid.uuid4().hex}"
    r = await http.post("/v1/users", json={"user_name": name, "email": f"{name}@example.com",
                                           "password": password})
    assert r.status_code == 200, r.text
    r = await http.post("/v1/auth/login", json={"user_name": name, "password": password})
    assert r.status_code == 200, r.text
    body = r.json()
    cookies = dict(r.cookies)
    http.cookies.clear()  # callers authenticate with the bearer token; a kept cookie would demand CSRF
    return {"name": name, "password": password, "token": body["sessionToken"], "user_id": body["user"]["id"],
            "cookies": cookies}


def bearer(user: dict) -> dict:
    return {"authorization": f"Bearer {user['token']}"}
