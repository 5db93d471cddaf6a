"""Seed 001 (joaomarcosg/Projeto-Gobid): a client of the GoBid auction API, as its README and
handlers describe it: gorilla/csrf tokens, an scs session cookie, JSON bodies with the seed's keys,
and the auction WebSocket's {"message", "amount", "kind", "user_id"} frames with integer kinds.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

UUID_LEN = 36


class GobidClient:
    """One browser's cookie jar: the CSRF token is fetched once and sent on every write."""

    def __init__(self, base_url: str, ws_url: str):
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)
        self.ws_url = ws_url
        self.token = ""

    async def csrf(self) -> str:
        reply = await self.http.get("/api/v1/csrftoken")
        assert reply.status_code == 200 and set(reply.json()) == {"csrf_token"}, reply.text
        self.token = reply.json()["csrf_token"]
        return self.token

    async def post(self, path: str, body: dict | None = None) -> httpx.Response:
        return await self.http.post(path, json=body, headers={"X-CSRF-Token": self.token})

    async def signup(self, name: str) -> tuple[str, str]:
        email = f"{name}@example.com"
        reply = await self.post("/api/v1/users/signupuser", {
            "user_name": name, "email": email, "password": "Password123", "bio": "testing my api"})
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert set(body) == {"user_id"} and len(body["user_id"]) == UUID_LEN
        return body["user_id"], email

    async def login(self, email: str) -> None:
        reply = await self.post("/api/v1/users/loginuser", {"email": email, "password": "Password123"})
        assert reply.status_code == 200 and reply.json() == {"message": "logged in sucessfully"}, reply.text

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())

    def subscribe(self, product_id: str):
        return websockets.connect(f"{self.ws_url}/api/v1/products/ws/subscribe/{product_id}",
                                  additional_headers={"Cookie": self.cookie_header()}, open_timeout=10)

    async def close(self) -> None:
        await self.http.aclose()


def name() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def client(mesh):
    c = GobidClient(mesh.base_url, mesh.ws_url)
    await c.csrf()
    yield c
    await c.close()


async def seller(mesh) -> GobidClient:
    c = GobidClient(mesh.base_url, mesh.ws_url)
    await c.csrf()
    _, email = await c.signup(name())
    await c.login(email)
    return c


def product_body(**overrides) -> dict:
    end = datetime.now(timezone.utc) + timedelta(hours=3)
    return {"product_name": "lamp", "description": "a brass desk lamp", "baseprice": 99.99,
            "auction_end": end.isoformat().replace("+00:00", "Z"), **overrides}


async def recv(ws, timeout: float = 10.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def test_one_token_survives_signup_login_and_logout(client):
    """gorilla/csrf ties the token to its own cookie, not to the session: fetched once, it keeps working."""
    user_id, email = await client.signup(name())
    before = dict(client.http.cookies)
    await client.login(email)
    assert client.http.cookies.get("agora_session") != before.get("agora_session")  # the session id rotates
    created = await client.post("/api/v1/products/", product_body())
    assert created.status_code == 201 and set(created.json()) == {"id"}, created.text
    out = await client.post("/api/v1/users/logout")
    assert out.status_code == 200 and out.json() == {"message": "logged out sucessfully"}
    again = await client.post("/api/v1/users/logout")
    assert again.status_code == 401 and again.json() == {"message": "must be logged in"}
    assert user_id


async def test_signup_answers_in_the_seeds_shapes(client):
    n = name()
    _, email = await client.signup(n)
    duplicate = await client.post("/api/v1/users/signupuser", {
        "user_name": n, "email": email, "password": "Password123", "bio": "testing my api"})
    assert duplicate.status_code == 422 and duplicate.json() == {"error": "email or username already exists"}
    bad = await client.post("/api/v1/users/signupuser", {
        "user_name": "", "email": "nope", "password": "short", "bio": "tiny", "role": "admin"})
    assert bad.status_code == 422, bad.text
    problems = bad.json()
    assert set(problems) == {"user_name", "email", "password", "bio"}, problems
    assert problems["email"] == "must be a valid email"
    assert problems["password"] == "password must be bigger than 8 chars"
    assert all(isinstance(v, str) for v in problems.values())
    # The seed's router serves /signup, its README /signupuser: both answer.
    other = await client.post("/api/v1/users/signup", {
        "user_name": name(), "email": f"{name()}@example.com", "password": "Password123",
        "bio": "testing my api"})
    assert other.status_code == 201 and set(other.json()) == {"user_id"}


async def test_login_refusals(client):
    _, email = await client.signup(name())
    wrong = await client.post("/api/v1/users/loginuser", {"email": email, "password": "WrongPassword"})
    assert wrong.status_code == 400 and wrong.json() == {"error": "invalid email or password"}
    unknown = await client.post("/api/v1/users/loginuser",
                                {"email": "nobody@example.com", "password": "x" * 9})
    assert unknown.status_code == 400 and unknown.json() == {"error": "invalid email or password"}
    malformed = await client.post("/api/v1/users/loginuser", {"email": "not-an-email", "password": ""})
    assert malformed.status_code == 422 and set(malformed.json()) == {"email", "passowrd"}  # the seed's key


async def test_products_need_a_session_and_follow_the_seeds_rules(client, mesh):
    anonymous = await client.post("/api/v1/products/", product_body())
    assert anonymous.status_code == 401 and anonymous.json() == {"message": "must be logged in"}
    s = await seller(mesh)
    try:
        cents = await s.post("/api/v1/products/", product_body(baseprice=10.123))
        assert cents.status_code == 422 and set(cents.json()) == {"baseprice"}, cents.text
        assert "2 decimal" in cents.json()["baseprice"]
        soon = await s.post("/api/v1/products/", product_body(
            auction_end=(datetime.now(timezone.utc) + timedelta(minutes=30)).isoformat()))
        assert soon.status_code == 422 and soon.json() == {
            "auction_end": "must be at least two hours duration"}
        # The README's example body uses other keys: they are ignored, so the real ones are missing.
        readme = await s.post("/api/v1/products/", {
            "product_name": "test", "product_description": "testing",
            "base_price": 99.99, "auction_end": product_body()["auction_end"]})
        assert readme.status_code == 422 and {"description", "baseprice"} <= set(readme.json())
        created = await s.post("/api/v1/products/", product_body(baseprice=150.1))
        assert created.status_code == 201, created.text
        auction = (await s.http.get(f"/v1/auctions/{created.json()['id']}")).json()["auction"]
        # exact minor units
        assert auction["startingPrice"] == {"currencyCode": "USD", "amountMinor": "15010"}
    finally:
        await s.close()


async def test_bids_on_the_seed_socket(mesh):
    owner, alice, bob = await seller(mesh), await seller(mesh), await seller(mesh)
    try:
        product_id = (await owner.post("/api/v1/products/", product_body(baseprice=100.0))).json()["id"]
        alice_id = (await alice.http.get("/v1/auth/whoami")).json()["user"]["id"]
        async with alice.subscribe(product_id) as a, bob.subscribe(product_id) as b:
            await asyncio.sleep(0.2)  # both registered before the first bid
            await a.send(json.dumps({"kind": 0, "amount": 150.0}))
            mine = await recv(a)
            assert mine == {"message": "Your bid was sucessfully placed", "kind": 1, "user_id": alice_id}
            theirs = await recv(b)
            assert theirs == {"message": "A new bid was placed", "amount": 150.0, "kind": 4,
                              "user_id": alice_id}

            await b.send(json.dumps({"kind": 0, "amount": 120}))
            low = await recv(b)
            assert (low["kind"] == 2 and low["message"] == "the bid values is too low"
                    and isinstance(low["kind"], int))

            await a.send("this is not json")
            bad = await recv(a)
            assert bad["kind"] == 3 and bad["message"] == "this message should be a valid JSON"
            # the socket stayed open
            await a.send(json.dumps({"kind": 0, "amount": 151.5, "user_id": "ignored"}))
            assert (await recv(a))["kind"] == 1
            assert (await recv(b))["amount"] == 151.5
        # The bids are the auction's own: Agora's routes show them.
        auction = (await owner.http.get(f"/v1/auctions/{product_id}")).json()["auction"]
        assert auction["bidCount"] == "2" and auction["currentPrice"]["amountMinor"] == "15150"
    finally:
        for c in (owner, alice, bob):
            await c.close()


async def test_socket_refusals_are_http_answers_before_the_upgrade(mesh, client):
    async def refused(c: GobidClient, product_id: str) -> tuple[int, dict]:
        with pytest.raises(InvalidStatus) as caught:
            async with c.subscribe(product_id):
                pass
        response = caught.value.response
        return response.status_code, json.loads(response.body)

    assert await refused(client, str(uuid.uuid4())) == (401, {"message": "must be logged in"})
    s = await seller(mesh)
    try:
        assert await refused(s, str(uuid.uuid4())) == (404, {"message": "no product with given id"})
        assert await refused(s, "not-a-uuid") == (
            400, {"message": "invalid product id - must be a valid uuid"})
    finally:
        await s.close()


async def test_the_end_of_an_auction_reaches_every_socket(mesh):
    """Kind 5 to all, then the socket closes; an ended auction refuses new sockets with 400."""
    owner, watcher = await seller(mesh), await seller(mesh)
    try:
        # The seed's own route insists on two hours; Agora's takes a short auction.
        end = datetime.now(timezone.utc) + timedelta(seconds=6)
        created = await owner.http.post("/v1/auctions", headers={"X-CSRF-Token": owner.token}, json={
            "productName": "quick", "description": "ends soon",
            "startingPrice": {"currencyCode": "USD", "amountMinor": "100"}, "auctionEnd": end.isoformat()})
        assert created.status_code == 200, created.text
        product_id = created.json()["productId"]
        async with watcher.subscribe(product_id) as ws:
            finished = await recv(ws, timeout=30)
            assert finished["kind"] == 5 and finished["message"] == "auction has been finished"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        with pytest.raises(InvalidStatus) as caught:
            async with watcher.subscribe(product_id):
                pass
        assert caught.value.response.status_code == 400
        assert json.loads(caught.value.response.body) == {"message": "the auction has ended"}
    finally:
        await owner.close()
        await watcher.close()
