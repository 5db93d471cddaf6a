"""The web UI's browser suite: one `agora up` mesh (embedded backends) and the session's one Chromium
(tests/browser.py); people are made through the API, and sign in either through the page's own dialog
(test_signin.py) or with the session cookie set by a login from their browser context."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.security.mesh import Mesh

PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def mesh(tmp_path_factory):
    mesh = Mesh(tmp_path_factory.mktemp("webmesh")).start()
    try:
        yield mesh
    finally:
        mesh.stop_clean()  # no ERROR in its log, its shutdown included


@pytest.fixture(scope="session")
def base(mesh) -> str:
    return mesh.base_url


@pytest.fixture
async def http(base):
    async with httpx.AsyncClient(base_url=base, timeout=20.0) as client:
        yield client


async def make_user(base: str, prefix: str = "u") -> dict:
    """A new account: {name, password, id, token} (token: a bearer session for API calls)."""
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base, timeout=20.0) as client:
        r = await client.post("/v1/users", json={"userName": name, "email": f"{name}@example.com", "password": PASSWORD})
        assert r.status_code == 200, r.text
        r = await client.post("/v1/auth/login", json={"userName": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        body = r.json()
    return {"name": name, "password": PASSWORD, "id": body["user"]["id"], "token": body["sessionToken"]}


def bearer(user: dict) -> dict:
    return {"authorization": f"Bearer {user['token']}"}


async def signed_in_context(browser, base: str, user: dict, width: int):
    """A browser context (one person's cookie jar) holding `user`'s session cookie, as after the dialog."""
    context = await browser.new_context(viewport={"width": width, "height": 860})
    reply = await context.request.post(f"{base}/v1/auth/login", data={"userName": user["name"], "password": user["password"]})
    assert reply.ok, await reply.text()
    # The pages ask who is signed in only when this browser signed in before (the cookie is HttpOnly).
    await context.add_init_script("localStorage.setItem('agora.signedIn', '1')")
    return context


def usd(minor: int) -> dict:
    return {"currencyCode": "USD", "amountMinor": str(minor)}


async def create_auction(base: str, seller: dict, name: str, *, seconds: float = 600, start: int = 1000,
                         increment: int = 100) -> dict:
    end = (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()
    async with httpx.AsyncClient(base_url=base, timeout=20.0, headers=bearer(seller)) as client:
        r = await client.post("/v1/auctions", json={
            "productName": name, "description": f"{name}, in good shape", "startingPrice": usd(start),
            "minIncrement": usd(increment), "auctionEnd": end, "antiSnipingWindow": "0s"})
        assert r.status_code == 200, r.text
        return r.json()["auction"]


async def place_bid(base: str, bidder: dict, auction_id: str, minor: int) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=20.0, headers=bearer(bidder)) as client:
        r = await client.post(f"/v1/auctions/{auction_id}/bids", json={"amount": usd(minor), "requestId": uuid.uuid4().hex})
        assert r.status_code == 200, r.text
        return r.json()
