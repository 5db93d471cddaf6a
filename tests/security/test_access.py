"""Who gets in: every write needs a session or is documented public; users cannot touch each other's
things; CSRF on cookie sessions; session fixation and revocation; injection strings are only data;
security headers; and, last, none of the passwords, tokens or keys used here appear in the logs."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from tests.security.conftest import bearer, sign_up
from tests.security.mesh import API_KEY

# Writes anyone may make, and why (the seeds' open APIs are part of the contract, DESIGN §2).
PUBLIC_WRITES = {
    ("POST", "/v1/users"): "SignUp: how a user comes to exist",
    ("POST", "/api/v1/users/signupuser"): "SeedSignUp: the auction seed's sign-up",
    ("POST", "/api/v1/users/signup"): "SeedSignUp: the path the auction seed's router serves",
    ("POST", "/v1/auth/login"): "Login: how a session comes to exist (rate limited per address)",
    ("POST", "/api/v1/users/loginuser"): "SeedLogin: the auction seed's login (rate limited per address)",
    ("POST", "/v1/polls"): "voting seed: anonymous polls (votes deduplicated by voter key)",
    ("POST", "/poll"): "SeedCreatePoll: the voting seed's POST /poll",
    ("POST", "/v1/polls/{poll_id}/votes"): "voting seed: anonymous votes with voter keys",
    ("POST", "/vote/{poll_id}/{option}"): "voting seed POST /vote/{id}/{option}",
    ("POST", "/v1/rooms/{room_id}/messages"): "chat seed: anyone posts under a display name",
    ("POST", "/v1/audit/events"): "e-commerce seed POST /api/log/event (append-only log)",
    ("POST", "/api/log/event"): "e-commerce seed POST /api/log/event",
    ("POST", "/v1/clients"): "e-commerce seed POST /api/clients (registration)",
    ("POST", "/api/clients"): "e-commerce seed POST /api/clients",
    ("POST", "/v1/sellers"): "e-commerce seed POST /api/sellers (registration)",
    ("POST", "/api/sellers"): "e-commerce seed POST /api/sellers",
    ("POST", "/v1/products"): "e-commerce seed POST /api/products",
    ("POST", "/api/products"): "e-commerce seed POST /api/products",
    ("POST", "/v1/orders"): "CreateOrder is ACCESS_PUBLIC for the seed shop: an order placed without a "
                            "session belongs to nobody",
    ("POST", "/api/orders"): "e-commerce seed POST /api/orders (no users in the seed)",
}
# Writes whose access is checked against the stored object (owner or service key): an unknown id
# answers 404 before any owner exists to compare; test_another_users_things covers the real check.
OWNER_CHECKED = {
    ("POST", "/v1/orders/{order_id}:cancel"): "orders: owner or service key",
    ("POST", "/v1/payments/{payment_id}:refund"): "payments: owner or service key",
}
# Open findings, reported to the lead (domain code, not the bridge or kit): anonymous writes that
# should need the service key or an owner. Listed so the test fails the day one is fixed or another appears.
# Every method's access class is declared in the protos and enforced by the kit; the full walk
# against those declarations, with no service key configured, is test_access_walk.py.
KNOWN_GAPS: dict[tuple[str, str], str] = {}
WRITE_METHODS = ("post", "put", "patch", "delete")


async def test_every_write_needs_a_session_or_is_documented_public(http):
    spec = (await http.get("/openapi.json")).json()
    writes = [(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in WRITE_METHODS]
    assert len(writes) > 30, "the OpenAPI document lists fewer writes than the mesh has"
    documented = {**PUBLIC_WRITES, **OWNER_CHECKED, **KNOWN_GAPS}
    missing = sorted(set(documented) - set(writes))
    assert not missing, f"allow-listed routes that no longer exist: {missing}"
    answers = {}
    for method, path in writes:
        url = re.sub(r"\{[^}]+\}", "x1", path)
        r = await http.request(method, url, json={})
        answers[(method, path)] = r.status_code
        assert r.status_code < 500, f"{method} {path} answered {r.status_code}: {r.text}"
    unexpected_open = sorted(k for k, s in answers.items() if s != 401 and k not in documented)
    assert not unexpected_open, (
        f"anonymous writes that are neither 401 nor documented public: {unexpected_open}")
    owner_open = sorted(k for k in OWNER_CHECKED if answers[k] not in (401, 403, 404))
    assert not owner_open, f"owner-checked writes answered an anonymous caller: {owner_open}"
    gaps_now = {k for k in KNOWN_GAPS if answers[k] != 401}
    assert gaps_now == set(KNOWN_GAPS), f"fixed, remove from KNOWN_GAPS: {sorted(set(KNOWN_GAPS) - gaps_now)}"
    protected = [k for k, s in answers.items() if s == 401]
    print(f"\n{len(writes)} writes: {len(protected)} need a session, {len(PUBLIC_WRITES)} documented public, "
          f"{len(OWNER_CHECKED)} owner-checked, {len(KNOWN_GAPS)} open findings")


async def test_another_users_things(http):
    alice, bob = await sign_up(http), await sign_up(http)
    r = await http.post("/v1/polls", json={"question": "tea?", "options": ["yes", "no"]},
                        headers=bearer(alice))
    assert r.status_code == 200, r.text
    poll_id = r.json()["poll"]["id"]
    r = await http.post(f"/v1/polls/{poll_id}:close", json={}, headers=bearer(bob))
    assert r.status_code in (403, 404), f"bob closed alice's poll: {r.status_code} {r.text}"
    r = await http.post(f"/v1/polls/{poll_id}:close", json={}, headers=bearer(alice))
    assert r.status_code == 200, r.text
    # Per-user data: bob's session does not read the notifications list of everyone.
    r = await http.get("/v1/notifications", headers=bearer(bob))
    assert r.status_code == 200, r.text
    assert all(n.get("userId", bob["user_id"]) == bob["user_id"] for n in r.json().get("notifications", []))
    # Anonymous per-user reads need the service key; the seed shop's open lists (GET /api/orders,
    # /api/clients) show only what belongs to nobody, never a user's orders or clients.
    for path in ("/v1/payments", "/v1/orders", "/v1/clients"):
        assert (await http.get(path)).status_code == 401, path
        assert (await http.get(path, headers={"x-api-key": "wrong"})).status_code == 401, path
        assert (await http.get(path, headers={"x-api-key": API_KEY})).status_code == 200, path
    r = await http.post("/v1/clients",
                        json={"name": "Bob", "email": f"bob-{uuid.uuid4().hex[:8]}@example.com"},
                        headers=bearer(bob))
    assert r.status_code == 200, r.text
    bobs = r.json()["client"]
    assert bobs["userId"] == bob["user_id"]
    assert (await http.get(f"/v1/clients/{bobs['id']}", headers=bearer(bob))).status_code == 200
    assert (await http.get(f"/v1/clients/{bobs['id']}", headers=bearer(alice))).status_code == 403
    assert (await http.get(f"/api/clients/{bobs['id']}")).status_code == 404
    r = await http.get("/v1/clients", headers=bearer(alice))
    assert r.status_code == 200 and bobs["id"] not in {c["id"] for c in r.json().get("clients", [])}
    r = await http.get("/api/clients", params={"page_size": 500})
    assert r.status_code == 200 and all(not c.get("userId") for c in r.json()), r.text
    r = await http.get("/api/orders", params={"page_size": 500})
    assert r.status_code == 200 and all(not o.get("userId") for o in r.json()), r.text
    # an anonymous order for a user's client is refused on the open route: it cannot see that client
    r = await http.post("/api/orders", json={"client_id": bobs["id"],
                                             "items": [{"product_id": "p", "quantity": 1}]})
    assert r.status_code in (400, 422) and "client" in r.text, r.text


async def test_csrf_guards_cookie_sessions(http, secure_mesh):
    user = await sign_up(http)
    session = user["cookies"].get("agora_session")
    assert session, f"login set no session cookie: {user['cookies']}"
    body = {"question": "csrf?", "options": ["a", "b"]}
    async with httpx.AsyncClient(base_url=secure_mesh.base_url, timeout=30.0) as browser:
        browser.cookies.set("agora_session", session)
        csrf = (await browser.get("/v1/auth/csrftoken")).json()["csrfToken"]  # sets the signed cookie
        assert browser.cookies.get("agora_csrf")
        r = await browser.post("/v1/polls", json=body)
        assert r.status_code == 403 and "CSRF" in r.text, r.text
        r = await browser.post("/v1/polls", json=body, headers={"x-csrf-token": "not-the-token"})
        assert r.status_code == 403, r.text
        r = await browser.post("/v1/polls", json=body, headers={"x-csrf-token": csrf})
        assert r.status_code == 200, r.text
        # A cross-site WebSocket carrying the cookie is refused (Origin check).
        from websockets.asyncio.client import connect

        ws_url = secure_mesh.base_url.replace("http", "ws") + "/v1/notifications:watch"
        async with connect(ws_url, origin="http://evil.example",
                           additional_headers={"cookie": f"agora_session={session}"}) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
            except Exception:
                pass
            assert ws.close_code == 4007, f"cross-origin cookie WebSocket: close {ws.close_code}"


async def test_session_fixation_and_revocation(http, secure_mesh):
    user = await sign_up(http)
    planted = "attacker-chosen-session-0123456789"
    async with httpx.AsyncClient(base_url=secure_mesh.base_url, timeout=30.0) as victim:
        victim.cookies.set("agora_session", planted)
        r = await victim.get("/v1/auth/csrftoken")  # what the login page does first
        assert r.status_code == 200, r.text
        csrf = r.json()["csrfToken"]
        r = await victim.post("/v1/auth/login",
                              json={"user_name": user["name"], "password": user["password"]},
                              headers={"x-csrf-token": csrf})
        assert r.status_code == 200, r.text
        issued = r.json()["sessionToken"]
        assert issued != planted and r.cookies.get("agora_session") == issued
    r = await http.get("/v1/auth/whoami", headers={"authorization": f"Bearer {planted}"})
    assert r.status_code == 401, f"a planted session id was adopted: {r.status_code} {r.text}"
    assert issued != user["token"], "a second login reused the first session's token"
    # Revocation: after logout the token is dead everywhere (within the 2 s session cache).
    headers = {"authorization": f"Bearer {issued}"}
    assert (await http.get("/v1/auth/whoami", headers=headers)).status_code == 200
    r = await http.post("/v1/auth/logout", json={}, headers=headers)
    assert r.status_code == 200, r.text
    assert (await http.get("/v1/auth/whoami", headers=headers)).status_code == 401
    for _ in range(50):  # other services cache a session for up to 2 s
        r = await http.post("/v1/rooms", json={"title": "r"}, headers=headers)
        if r.status_code == 401:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 401, f"a revoked session still writes: {r.status_code} {r.text}"
    assert (await http.get("/v1/auth/whoami", headers=bearer(user))).status_code == 200, (
        "logout ended other sessions")


INJECTIONS = [
    "'; DROP TABLE polls; --",
    "\" OR 1=1 --",
    "x'); DELETE FROM users WHERE ('1'='1",
    "'; TRUNCATE orders; APPLY BATCH; --",
    "{\"$gt\": \"\"}",
    "{\"$where\": \"sleep(1000)\"}",
    "$ne",
    "\\x00\\u0000 NUL and ; semicolons",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "Robert'); DROP TABLE Students;--",
]


async def test_injection_strings_are_stored_verbatim(http):
    user = await sign_up(http)
    room = f"inj-{user['name']}"
    r = await http.post("/v1/rooms", json={"room_id": room, "title": "injections"}, headers=bearer(user))
    assert r.status_code == 200, r.text
    for n, text in enumerate(INJECTIONS):
        r = await http.post("/v1/polls", json={"question": text, "options": [text, text + "!"]},
                            headers=bearer(user))
        assert r.status_code == 200, r.text
        poll = (await http.get(f"/v1/polls/{r.json()['poll']['id']}")).json()["poll"]
        assert poll["question"] == text and [o["text"] for o in poll["options"]] == [text, text + "!"], poll
        r = await http.post("/v1/clients", json={"name": text, "email": f"inj{n}-{room}@example.com"},
                            headers=bearer(user))
        assert r.status_code == 200, r.text
        client_id = r.json()["client"]["id"]
        r = await http.get(f"/v1/clients/{client_id}", headers=bearer(user))
        assert r.json()["client"]["name"] == text, r.text
        r = await http.post(f"/v1/rooms/{room}/messages", json={"username": "inj", "text": text})
        assert r.status_code == 200, r.text
        assert r.json()["message"]["text"] == text, r.text
        r = await http.post("/v1/audit/events",
                            json={"type": "security.injection.tried", "source": text, "key": text})
        assert r.status_code == 200, r.text
        event_id = r.json()["event"]["id"]
        stored = (await http.get(f"/v1/audit/events/{event_id}", headers={"x-api-key": API_KEY})).json()
        assert stored["event"]["source"] == text, stored
    # ... and harmless: the tables and collections they name still answer.
    assert (await http.get("/v1/polls")).status_code == 200
    assert (await http.get("/v1/orders", headers={"x-api-key": API_KEY})).status_code == 200
    assert (await http.get("/v1/auth/whoami", headers=bearer(user))).status_code == 200


async def test_security_headers(http):
    for path in ("/health", "/openapi.json", "/v1/polls", "/v1/nope", "/"):
        r = await http.get(path)
        assert r.headers.get("x-content-type-options") == "nosniff", (path, r.headers)
        assert r.headers.get("x-frame-options") == "DENY", (path, r.headers)
        assert "frame-ancestors 'none'" in r.headers.get("content-security-policy", ""), (path, r.headers)
        assert r.headers.get("referrer-policy") == "no-referrer", (path, r.headers)
        assert "strict-transport-security" not in r.headers, "HSTS over plain HTTP"


async def test_zz_secrets_never_logged(http, secure_mesh):
    """Runs last in this module: greps everything the mesh logged during these tests."""
    user = await sign_up(http)
    await http.get("/v1/auth/whoami", headers=bearer(user))
    await http.post("/v1/auth/login",
                    json={"user_name": user["name"], "password": "wrong-" + user["password"]})
    await http.get("/v1/orders", headers={"x-api-key": API_KEY})
    await http.post("/v1/auth/logout", json={}, headers=bearer(user))
    csrf = await http.get("/v1/auth/csrftoken")
    csrf_secrets = (csrf.json()["csrfToken"], csrf.cookies["agora_csrf"])
    http.cookies.clear()
    await asyncio.sleep(0.5)
    log = secure_mesh.log_text()
    assert len(log) > 0
    for secret in (user["password"], user["token"], API_KEY, *csrf_secrets):
        assert secret and secret not in log, f"a secret appears in the logs: {secret[:6]}..."
    assert not re.search(r"Pw-[0-9a-f]{32}", log), "a password from this module appears in the logs"
