"""Issue 18, finding 1: with NO service key configured (the `agora up` default), walk every operation of
/openapi.json as an anonymous caller, as an unrelated signed-in user and as the owner of the resources
the path names, against the access classes the protos declare (read from the descriptors, not listed
by hand). Internal methods are not reachable from the edge at all.

Expectations per declared class:
  PUBLIC    anyone; never a 5xx
  USER      anonymous -> 401
  OWNER     anonymous -> 401; the unrelated user -> 403/404, or (a list) nothing of the owner's
  INTERNAL  not in /openapi.json; its paths answer 404/405
"""

from __future__ import annotations

import asyncio
import re
import uuid
from importlib import resources

import httpx
import pytest

from gateway.descriptors import load
from tests.security.conftest import bearer
from tests.security.mesh import Mesh

PUBLIC, USER, OWNER, INTERNAL = 1, 2, 3, 4
NAMES = {0: "INTERNAL (unset)", PUBLIC: "PUBLIC", USER: "USER", OWNER: "OWNER", INTERNAL: "INTERNAL"}
_VAR = re.compile(r"\{([^}=]+)(=[^}]*)?\}")


def declared_table() -> tuple[dict[tuple[str, str], tuple[str, int, bool]], list[tuple[str, str, str]]]:
    """(METHOD, openapi path) -> (rpc full name, access, client-streaming) for every HTTP binding of
    every RPC, from the descriptor set the bridge loads; and the internal methods' bindings."""
    ds = load(resources.files("agora").joinpath("descriptors.binpb").read_bytes())
    table, internal = {}, []
    for service in ds.services:
        for method in service.methods:
            rule = ds.http_rule(method)
            if rule is None:
                continue
            access = ds.access.get(method.full_name, 0)
            for r in (rule, *rule.additional_bindings):
                kind = r.WhichOneof("pattern")
                verb, path = (r.custom.kind, r.custom.path) if kind == "custom" else (kind, getattr(r, kind))
                key = (verb.upper(), _VAR.sub(lambda m: "{" + m.group(1) + "}", path))
                table[key] = (method.full_name, access or INTERNAL, method.client_streaming)
                if access in (0, INTERNAL):
                    internal.append((verb.upper(), path, method.full_name))
    return table, internal


@pytest.fixture(scope="module")
def open_mesh(tmp_path_factory):
    """`agora up` exactly as a laptop runs it: no AGORA_SERVICE_API_KEY at all."""
    mesh = Mesh(tmp_path_factory.mktemp("openmesh"), AGORA_SERVICE_API_KEY="").start()
    try:
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
async def http(open_mesh):
    async with httpx.AsyncClient(base_url=open_mesh.base_url, timeout=30.0) as client:
        yield client


async def new_user(http: httpx.AsyncClient) -> dict:
    name = f"w{uuid.uuid4().hex[:10]}"
    password = f"Pw-{uuid.uuid4().hex}"
    r = await http.post("/v1/users", json={"user_name": name, "email": f"{name}@example.com",
                                           "password": password})
    assert r.status_code == 200, r.text
    r = await http.post("/v1/auth/login", json={"user_name": name, "password": password})
    assert r.status_code == 200, r.text
    http.cookies.clear()
    return {"name": name, "token": r.json()["sessionToken"], "user_id": r.json()["user"]["id"]}


async def owned_world(http: httpx.AsyncClient, alice: dict) -> dict[str, str]:
    """Alice's things, one of each kind a path can name: path variable name -> id."""
    h = bearer(alice)
    tag = uuid.uuid4().hex[:8]
    client = (await http.post("/v1/clients", json={"name": "Alice", "email": f"a-{tag}@example.com"},
                              headers=h))
    assert client.status_code == 200, client.text
    client_id = client.json()["client"]["id"]
    seller = await http.post("/v1/sellers", json={"name": "Alice's shop", "email": f"s-{tag}@example.com"},
                             headers=h)
    assert seller.status_code == 200, seller.text
    seller_id = seller.json()["seller"]["id"]
    product = await http.post("/v1/products", headers=h, json={
        "seller_id": seller_id, "name": "Lamp", "stock": 50,
        "price": {"currency_code": "EUR", "amount_minor": "900"}})
    assert product.status_code == 200, product.text
    product_id = product.json()["product"]["id"]
    order = await http.post("/v1/orders", headers=h, json={
        "client_id": client_id, "card_token": "tok_ok", "items": [{"product_id": product_id, "quantity": 1}]})
    assert order.status_code == 200, order.text
    order_id = order.json()["order"]["id"]
    payment_id = ""
    for _ in range(100):
        r = await http.get(f"/v1/orders/{order_id}/payment", headers=h)
        if r.status_code == 200:
            payment_id = r.json()["payment"]["id"]
            break
        await asyncio.sleep(0.1)
    assert payment_id, f"no payment for alice's order: {r.status_code} {r.text}"
    notification_id = ""
    for _ in range(100):
        r = await http.get("/v1/notifications", params={"order_id": order_id}, headers=h)
        assert r.status_code == 200, r.text
        if r.json().get("notifications"):
            notification_id = r.json()["notifications"][0]["id"]
            break
        await asyncio.sleep(0.1)
    poll = await http.post("/v1/polls", json={"question": "walk?", "options": ["yes", "no"]}, headers=h)
    assert poll.status_code == 200, poll.text
    room = await http.post("/v1/rooms", json={"room_id": f"walk-{tag}", "title": "walk"}, headers=h)
    assert room.status_code == 200, room.text
    return {"client_id": client_id, "seller_id": seller_id, "product_id": product_id, "order_id": order_id,
            "payment_id": payment_id, "notification_id": notification_id or str(uuid.uuid4()),
            "poll_id": poll.json()["poll"]["id"], "room_id": f"walk-{tag}", "user_id": alice["user_id"]}


async def answer(http: httpx.AsyncClient, method: str, url: str, headers: dict) -> tuple[int, str]:
    """The status (and body) of one call; a stream that stays open counts as a success (200)."""
    kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    try:
        async with asyncio.timeout(3):
            async with http.stream(method, url, headers={**headers, "accept": "application/json"},
                                   **kwargs) as r:
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                return r.status_code, body.decode(errors="replace")
    except TimeoutError:
        return 200, ""  # a live stream was opened


async def test_walk_every_operation_as_anonymous_stranger_and_owner(http):
    table, internal = declared_table()
    spec = (await http.get("/openapi.json")).json()
    operations = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")]
    undeclared = sorted(op for op in operations if op not in table)
    assert not undeclared, f"operations the descriptors do not declare: {undeclared}"
    exposed_internal = sorted(op for op in operations if table[op][1] == INTERNAL)
    assert not exposed_internal, f"internal methods in /openapi.json: {exposed_internal}"

    alice, bob = await new_user(http), await new_user(http)
    world = await owned_world(http, alice)
    counts = {"anonymous": 0, "stranger": 0, "owner": 0}
    failures = []

    def url_for(path: str) -> str:
        return _VAR.sub(lambda m: world.get(m.group(1), "x1"), path)

    for method, path in operations:
        rpc, access, client_streaming = table[(method, path)]
        url = url_for(path)
        anon, _ = await answer(http, method, url, {})
        counts["anonymous"] += 1
        if anon >= 500:
            failures.append(f"anonymous {method} {path} ({rpc}): {anon}")
        if (access in (USER, OWNER) and anon != 401
                and not (client_streaming and anon < 500 and not 200 <= anon < 300)):
            failures.append(f"anonymous {method} {path} ({rpc}, {NAMES[access]}): {anon}, not 401")
        if access != OWNER:
            continue
        stranger, text = await answer(http, method, url, bearer(bob))
        counts["stranger"] += 1
        names_owned = any(m.group(1) in world for m in _VAR.finditer(path))
        if (not names_owned and 200 <= stranger < 300
                and any(world[k] in text for k in ("user_id", "order_id"))):
            failures.append(f"stranger {method} {path} ({rpc}) saw the owner's data")
        owner, text = await answer(http, method, url, bearer(alice))
        counts["owner"] += 1
        # The walk's body is `{}`: where the declared rules refuse it (400) for the owner too, the
        # request never reaches the ownership check; the stranger tests below send valid bodies.
        invalid_for_all = stranger == 400 and owner == 400
        if names_owned and stranger not in (403, 404) and not invalid_for_all:
            failures.append(f"stranger {method} {path} ({rpc}): {stranger}, not 403/404")
        audit = rpc.startswith("agora.audit.")  # no user owns the audit log: operators (service key) only
        if owner == 401 or owner >= 500 or (owner == 403 and names_owned and not audit):
            failures.append(f"owner {method} {path} ({rpc}): {owner} {text[:200]}")

    for method, path, rpc in internal:
        r = await http.request(method, _VAR.sub("x1", path), json={} if method != "GET" else None)
        if r.status_code not in (404, 405):
            failures.append(f"internal {method} {path} ({rpc}) reachable: {r.status_code}")
    by_class = {}
    for op in operations:
        by_class[NAMES[table[op][1]]] = by_class.get(NAMES[table[op][1]], 0) + 1
    print(f"\naccess walk (no service key): {len(operations)} operations in /openapi.json {by_class}; "
          f"walked as anonymous {counts['anonymous']}, as an unrelated user {counts['stranger']}, "
          f"as the owner {counts['owner']}; {len(internal)} internal bindings refused at the edge")
    assert not failures, "\n".join(failures)


async def test_finding_1_cases(http):
    """The exact holes of issue 18 finding 1, with no service key configured."""
    alice, bob = await new_user(http), await new_user(http)
    world = await owned_world(http, alice)
    order, product, client, payment = (world["order_id"], world["product_id"], world["client_id"],
                                       world["payment_id"])
    anonymous = [
        ("POST", f"/v1/orders/{order}:cancel", {}),
        ("POST", f"/v1/payments/{payment}:refund", {}),
        ("GET", "/v1/notifications", None),
        ("GET", "/v1/notifications:watch", None),
        ("PATCH", f"/v1/clients/{client}?update_mask=name", {"name": "Mallory"}),
        ("POST", f"/v1/products/{product}:adjustStock", {"delta": 5}),
        ("PATCH", f"/v1/products/{product}?update_mask=price",
         {"price": {"currency_code": "EUR", "amount_minor": "1"}}),
        ("GET", f"/v1/orders/{order}", None),
        ("GET", f"/v1/payments/{payment}", None),
    ]
    for method, url, body in anonymous:
        r = await http.request(method, url, json=body)
        assert r.status_code == 401, f"anonymous {method} {url}: {r.status_code} {r.text}"
        assert "sign in" in r.json()["message"], r.text
    # Anonymous list of orders (the seed shop's open GET /api/orders) shows no user's orders.
    r = await http.get("/api/orders", params={"page_size": 500})
    assert r.status_code == 200 and order not in r.text, r.text
    # Internal methods are not exposed at the edge at all.
    r = await http.post(f"/v1/stock-reservations/{order}:release", json={})
    assert r.status_code == 404, r.text
    r = await http.post(f"/v1/stock-reservations/{order}", json={"items": []})
    assert r.status_code == 404, r.text
    r = await http.post("/v1/auth/check", json={"session_token": alice["token"]})
    assert r.status_code == 404, r.text
    # Another signed-in user cannot change alice's product, client, order or payment.
    stranger = [
        ("PATCH", f"/v1/products/{product}?update_mask=price",
         {"price": {"currency_code": "EUR", "amount_minor": "1"}}),
        ("POST", f"/v1/products/{product}:adjustStock", {"delta": 5}),
        ("PATCH", f"/v1/clients/{client}?update_mask=name", {"name": "Mallory"}),
        ("POST", f"/v1/orders/{order}:cancel", {}),
        ("POST", f"/v1/payments/{payment}:refund", {}),
    ]
    for method, url, body in stranger:
        r = await http.request(method, url, json=body, headers=bearer(bob))
        assert r.status_code == 403, f"bob {method} {url}: {r.status_code} {r.text}"
    r = await http.get("/v1/notifications", headers=bearer(bob))
    assert r.status_code == 200 and order not in r.text, r.text
    # ... and the owner can.
    r = await http.patch(f"/v1/products/{product}?update_mask=price", headers=bearer(alice),
                         json={"price": {"currency_code": "EUR", "amount_minor": "1200"}})
    assert r.status_code == 200 and r.json()["product"]["price"]["amountMinor"] == "1200", r.text
    r = await http.post(f"/v1/products/{product}:adjustStock", json={"delta": 5}, headers=bearer(alice))
    assert r.status_code == 200, r.text
    r = await http.patch(f"/v1/clients/{client}?update_mask=name", json={"name": "Alice B."},
                         headers=bearer(alice))
    assert r.status_code == 200 and r.json()["client"]["name"] == "Alice B.", r.text
    r = await http.get("/v1/notifications", headers=bearer(alice))
    assert r.status_code == 200 and order in r.text, r.text
    r = await http.post(f"/v1/orders/{order}:cancel", json={}, headers=bearer(alice))
    assert r.status_code == 200, r.text


def test_every_rpc_declares_its_access_class():
    """Authorization is declared, not remembered: no RPC of the mesh leaves (agora.api.v1.access) unset."""
    ds = load(resources.files("agora").joinpath("descriptors.binpb").read_bytes())
    methods = [m for s in ds.services if s.full_name.startswith("agora.") for m in s.methods]
    missing = sorted(m.full_name for m in methods if not ds.access.get(m.full_name))
    assert len(methods) > 70 and not missing, f"RPCs without an access class: {missing}"
