"""The web UI's browser suite: one `agora up` mesh (embedded backends) and the session's one Chromium
(tests/browser.py). People are made over gRPC and sign in either through the page's own dialog or by
carrying their session cookie into a browser context, as the dialog would have left it."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from services.kit.auth import EDGE_ADDRESS, edge_address
from tests.security.mesh import API_KEY, Mesh

PASSWORD = "correct horse battery"
SESSION_COOKIE = "agora_session"
ADDRESSES = itertools.count(1)   # this session's mesh is its own: fresh addresses from 10.0.0.1


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


async def make_user(mesh, prefix: str = "u") -> dict:
    """A new account: {name, password, id, token} (token: its session, for API calls and the cookie).

    Made over gRPC from an address of its own (signed with the mesh's service credential, as the bridge signs
    it): each is a different person, and the identity
    service allows only 20 sign-ups an hour from one address (the browser's own sign-ups, in
    test_signin.py, go through the bridge)."""
    import grpc
    from agora.identity.v1 import identity_pb2 as ipb
    from agora.identity.v1 import identity_pb2_grpc

    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    n = next(ADDRESSES)
    address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
    metadata = [(EDGE_ADDRESS, edge_address(API_KEY, address))]  # as the bridge vouches for a caller
    async with grpc.aio.insecure_channel(mesh.target("identity")) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        reply = await stub.SignUp(ipb.SignUpRequest(user_name=name, email=f"{name}@example.com",
                                                    password=PASSWORD),
                                  metadata=metadata, timeout=20)
        login = await stub.Login(ipb.LoginRequest(user_name=name, password=PASSWORD), metadata=metadata,
                                 timeout=20)
    return {"name": name, "password": PASSWORD, "id": reply.user_id, "token": login.session_token}


def bearer(user: dict) -> dict:
    return {"authorization": f"Bearer {user['token']}"}


async def signed_in_context(browser, base: str, user: dict, width: int):
    """A browser context (one person's cookie jar) holding `user`'s session cookie, as after the dialog."""
    context = await browser.new_context(viewport={"width": width, "height": 860})
    await context.add_cookies([{"name": SESSION_COOKIE, "value": user["token"], "url": base,
                                "httpOnly": True}])
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
        r = await client.post(f"/v1/auctions/{auction_id}/bids",
                              json={"amount": usd(minor), "requestId": uuid.uuid4().hex})
        assert r.status_code == 200, r.text
        return r.json()
