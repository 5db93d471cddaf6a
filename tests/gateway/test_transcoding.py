"""Unary transcoding over real HTTP to a real gRPC server: templates, bodies, query, WKTs, headers, limits."""

from __future__ import annotations

import base64

import pytest


async def test_body_star_all_kinds(client):
    sample = {
        "name": "s1", "int32Value": -5, "int64Value": "9007199254740993",
        "uint64Value": "18446744073709551615",
        "flag": True, "ratio": 0.5, "score": 1.5, "blob": base64.b64encode(b"\x00\x01").decode(),
        "color": "COLOR_RED", "tags": ["a", "b"], "numbers": [1, 2], "colors": ["COLOR_GREEN", 1],
        "inner": {"label": "in", "size": 3, "color": "COLOR_GREEN"}, "inners": [{"label": "x"}],
        "labels": {"k": "v"}, "at": "2024-05-06T07:08:09.123Z", "ttl": "1.5s", "mask": "name,inner.label",
        "nick": "nick", "limit": 7, "enabled": False, "weight": 2.25, "big": "123", "small": 4, "huge": "5",
        "fraction": 0.25, "raw": base64.b64encode(b"hi").decode(), "attrs": {"a": [1, "x", None]},
        "dynamic": {"deep": True}, "items": [1, "two"], "nothing": {},
        "extra": {"@type": "type.googleapis.com/agora.testing.v1.Inner", "label": "packed"},
        "note": "", "number": 9,
    }
    r = await client.post("/v1/samples", json=sample)
    assert r.status_code == 200, r.text
    got = r.json()
    expected = dict(sample, colors=["COLOR_GREEN", "COLOR_RED"], inners=[{"label": "x", "size": 0,
                    "color": "COLOR_UNSPECIFIED"}], at="2024-05-06T07:08:09.123Z", inner={"label": "in",
                    "size": 3, "color": "COLOR_GREEN"},
                    extra={"@type": "type.googleapis.com/agora.testing.v1.Inner",
                    "label": "packed", "size": 0, "color": "COLOR_UNSPECIFIED"}, ttl="1.500s")
    for key, value in expected.items():
        assert got[key] == value, key


async def test_original_field_names_accepted(client):
    r = await client.post("/v1/samples", json={"int32_value": 4, "update_mask": None} | {"int64_value": 3})
    assert r.status_code == 400  # update_mask is not a Sample field: named in the message
    assert "update_mask" in r.json()["message"]
    r = await client.post("/v1/samples", json={"int32_value": 4, "int64_value": 3})
    assert r.status_code == 200 and r.json()["int32Value"] == 4 and r.json()["int64Value"] == "3"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"bogus": 1}, "bogus"), ({"int32Value": "x"}, "int32Value"), ({"flag": "yes"}, "flag"),
     ({"color": "COLOR_PURPLE"}, "color"), ({"at": "yesterday"}, "at"), ({"inner": {"size": []}}, "size")],
)
async def test_bad_body_names_the_field(client, body, field):
    r = await client.post("/v1/samples", json=body)
    assert r.status_code == 400
    assert r.json()["code"] == 3 and field in r.json()["message"]


async def test_malformed_json(client):
    r = await client.post("/v1/samples", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["message"]
    r = await client.post("/v1/samples", content=b"[1,2]")
    assert r.status_code == 400


async def test_path_templates(client):
    assert (await client.get("/v1/samples/abc")).json()["name"] == "abc"
    got = (await client.get("/v1/inner/lbl/samples/42")).json()
    assert got["inner"]["label"] == "lbl" and got["int32Value"] == 42
    assert (await client.get("/v1/shelves/1/books/2")).json()["name"] == "shelves/1/books/2"
    assert (await client.get("/v1/shelves%2F1%2Fbooks%2F2")).json()["name"] == "shelves/1/books/2"
    assert (await client.get("/v1/files/a/b/c.txt")).json()["name"] == "a/b/c.txt"
    assert (await client.get("/v1/any/whatever/samples/q")).json()["name"] == "q"
    assert (await client.get("/v1/samples:echo", params={"name": "v"})).json()["name"] == "v"
    r = await client.post("/v1/samples/pub:publish", json={"int32Value": 1})
    assert r.json()["name"] == "pub" and r.json()["int32Value"] == 1
    r = await client.put("/v1/samples/put1", json={"name": "ignored-by-path"})
    assert r.json()["name"] == "put1"  # path wins over body
    assert (await client.delete("/v1/samples/gone")).json()["name"] == "gone"
    r = await client.get("/v1/inner/x/samples/notanumber")
    assert r.status_code == 400 and "int32_value" in r.json()["message"]


async def test_query_parameters(client):
    params = [
        ("tags", "a"), ("tags", "b"), ("numbers", "1"), ("numbers", "2"), ("inner.label", "L"),
        ("inner.color", "2"), ("color", "COLOR_RED"), ("colors", "1"), ("colors", "COLOR_GREEN"),
        ("int64_value", "-12"), ("uint64Value", "12"), ("flag", "true"), ("ratio", "NaN"), ("score", "0.5"),
        ("at", "2020-01-01T00:00:00Z"), ("ttl", "3s"), ("mask", "name,innerLabel"), ("nick", "n"),
        ("limit", "3"), ("enabled", "true"), ("weight", "1.5"), ("big", "77"), ("small", "8"), ("huge", "9"),
        ("fraction", "0.5"), ("raw", base64.b64encode(b"q").decode()), ("attrs", '{"x":1}'),
        ("dynamic", "word"),
        ("items", "[1,2]"), ("labels[a]", "b"), ("blob", base64.b64encode(b"zz").decode()),
        ("text", "chosen"),
    ]
    r = await client.get("/v1/samples/q", params=params)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["tags"] == ["a", "b"] and got["numbers"] == [1, 2]
    assert got["inner"] == {"label": "L", "size": 0, "color": "COLOR_GREEN"}
    assert got["color"] == "COLOR_RED" and got["colors"] == ["COLOR_RED", "COLOR_GREEN"]
    assert got["int64Value"] == "-12" and got["uint64Value"] == "12" and got["flag"] is True
    assert got["ratio"] == "NaN" and got["score"] == 0.5
    assert got["at"] == "2020-01-01T00:00:00Z" and got["ttl"] == "3s" and got["mask"] == "name,innerLabel"
    assert got["nick"] == "n" and got["limit"] == 3 and got["enabled"] is True and got["weight"] == 1.5
    assert got["big"] == "77" and got["small"] == 8 and got["huge"] == "9" and got["fraction"] == 0.5
    assert got["attrs"] == {"x": 1} and got["dynamic"] == "word" and got["items"] == [1, 2]
    assert got["labels"] == {"a": "b"} and got["text"] == "chosen"
    assert got["name"] == "q"  # path-bound, not overridable from the query


@pytest.mark.parametrize(
    ("param", "value"),
    [("int32_value", "x"), ("flag", "maybe"), ("color", "COLOR_PURPLE"), ("at", "noon"), ("ttl", "3 min"),
     ("int32_value", "99999999999"), ("attrs", "{not json"), ("inner", "x"), ("labels", "x")],
)
async def test_bad_query_is_400(client, param, value):
    r = await client.get("/v1/samples/q", params={param: value})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == 3


async def test_unknown_query_parameter_is_400_naming_it(client):
    r = await client.get("/v1/samples/q", params={"int32Value": "1", "int32_valu": "2"})
    assert r.status_code == 400, r.text
    (detail,) = r.json()["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert [v["field"] for v in detail["fieldViolations"]] == ["int32_valu"]
    assert "int32_valu" in r.json()["message"] and "int32Value" in detail["fieldViolations"][0]["description"]


async def test_query_parameter_on_a_whole_body_binding_is_400(client):
    r = await client.post("/v1/samples", json={"name": "n"}, params={"name": "q"})
    assert r.status_code == 400, r.text
    assert r.json()["details"][0]["fieldViolations"][0]["field"] == "name"


def test_lenient_bindings_ignore_unknown_query_parameters(mesh):
    from gateway import query

    descriptor = mesh.messages.Sample.DESCRIPTOR
    assert query.params_to_json(descriptor, [("nick", "n"), ("nope", "x")], lenient=True) == {"nick": "n"}
    query.refuse_any(descriptor, [("nope", "x")], lenient=True)


async def test_body_field_and_query_rest(client):
    r = await client.patch(
        "/v1/samples/s9", json={"int32Value": 5, "name": "from-body"}, params={"updateMask": "int32Value"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["sample"]["name"] == "s9" and r.json()["sample"]["int32Value"] == 5
    assert r.json()["updateMask"] == "int32Value"


async def test_response_body(client):
    r = await client.get("/v1/samples/n/inner", params={"inner.label": "only"})
    assert r.json() == {"label": "only", "size": 0, "color": "COLOR_UNSPECIFIED"}


async def test_unknown_route_and_wrong_method(client):
    r = await client.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["code"] == 5
    r = await client.post("/v1/samples/x/inner", json={})
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    r = await client.patch("/v1/samples/x", json={})  # PATCH is bound; PUT, GET, DELETE too
    assert r.status_code == 200
    r = await client.post("/v1/samples/x", json={})
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"DELETE", "GET", "PATCH", "PUT"}


async def test_body_limit(client):
    r = await client.post("/v1/samples", content=b'{"name":"' + b"x" * 70000 + b'"}')
    assert r.status_code == 413 and r.json()["code"] == 8

    async def chunks():
        for _ in range(20):
            yield b"x" * 8192

    r = await client.post("/v1/samples", content=chunks())  # chunked: no Content-Length to trust
    assert r.status_code == 413


async def test_metadata_in_and_out(client):
    r = await client.get(
        "/v1/headers",
        headers={"Authorization": "Bearer tok", "Grpc-Metadata-Tenant": "t1", "X-Request-Id": "req-123"},
    )
    assert r.status_code == 200
    md = r.json()["metadata"]
    assert md["authorization"] == "Bearer tok" and md["tenant"] == "t1" and md["x-request-id"] == "req-123"
    assert r.headers["x-request-id"] == "req-123"
    assert r.headers["grpc-metadata-x-upstream"] == "mirror"
    assert r.headers["grpc-trailer-x-trailer"] == "done"
    assert "agora_session=fresh" in r.headers["set-cookie"]
    generated = (await client.get("/v1/headers")).headers["x-request-id"]
    assert len(generated) >= 16


async def test_bad_metadata_header(client):
    r = await client.get("/v1/headers", headers={"Grpc-Metadata-grpc-status": "0"})
    assert r.status_code == 400


async def test_client_cannot_forge_what_the_bridge_vouches_for(client):
    """The caller's address (login rate limits use it) and credentials come from the bridge only."""
    for header in ("Grpc-Metadata-X-Forwarded-For", "Grpc-Metadata-Authorization"):
        r = await client.get("/v1/headers", headers={header: "1.2.3.4"})
        assert r.status_code == 400 and header.lower() in r.json()["message"], header
    md = (await client.get("/v1/headers")).json()["metadata"]
    assert md["x-forwarded-for"] == "127.0.0.1"
    md = (await client.get("/v1/headers", headers={"X-Api-Key": "k1"})).json()["metadata"]
    assert md["x-api-key"] == "k1"


async def test_cookie_session_and_csrf(mesh):
    import httpx

    from gateway.auth import CsrfGuard
    from tests.gateway.conftest import CSRF_KEY

    guard = CsrfGuard(CSRF_KEY)
    secret, cookie = guard.mint()  # what the bridge sets for a page that asks for a token
    # Plain Cookie headers: the client's jar would take the upstream's Set-Cookie and change the session.
    jar = {"Cookie": f"agora_session=sess1; agora_csrf={cookie}"}
    async with httpx.AsyncClient(base_url=mesh.base_url) as c:
        r = await c.get("/v1/headers", headers=jar)
        assert r.json()["metadata"]["authorization"] == "Bearer sess1"
        r = await c.post("/v1/headers", json={}, headers=jar)
        assert r.status_code == 403 and r.json()["code"] == 7
        r = await c.post("/v1/headers", json={}, headers={**jar, "X-CSRF-Token": "wrong"})
        assert r.status_code == 403
        # Two tokens for one cookie differ (masked) and both pass.
        first, second = guard.token(secret), guard.token(secret)
        assert first != second
        for token in (first, second):
            r = await c.post("/v1/headers", json={}, headers={**jar, "X-CSRF-Token": token})
            assert r.status_code == 200 and r.json()["metadata"]["authorization"] == "Bearer sess1"
        # A cookie/token pair the attacker made up does not verify: the cookie is signed.
        planted = {"Cookie": "agora_session=sess1; agora_csrf=tokA", "X-CSRF-Token": "tokA"}
        r = await c.post("/v1/headers", json={}, headers=planted)
        assert r.status_code == 403
        forged_secret, forged_cookie = CsrfGuard(b"someone else's key").mint()
        r = await c.post("/v1/headers", json={}, headers={
            "Cookie": f"agora_session=sess1; agora_csrf={forged_cookie}",
            "X-CSRF-Token": guard.token(forged_secret)})
        assert r.status_code == 403
        r = await c.post("/v1/headers", json={}, headers={**jar, "Authorization": "Bearer header-wins"})
        assert r.status_code == 200 and r.json()["metadata"]["authorization"] == "Bearer header-wins"


async def test_deadline(client):
    r = await client.get("/v1/slow", params={"delay": "2s"}, headers={"Grpc-Timeout": "100m"})
    assert r.status_code == 504 and r.json()["code"] == 4
    r = await client.get("/v1/slow", params={"delay": "0s"}, headers={"Grpc-Timeout": "bogus"})
    assert r.status_code == 400


async def test_cors(client):
    r = await client.options(
        "/v1/samples", headers={"Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"}
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://allowed.example"
    r = await client.get("/v1/samples/x", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_docs_health_static(client):
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    assert "/v1/{name}" in doc["paths"] and "/v1/samples:echo" in doc["paths"]
    sample = doc["components"]["schemas"]["agora.testing.v1.Sample"]
    assert sample["description"] == "Every kind of field a request can carry."
    assert sample["properties"]["at"] == {"type": ["string", "null"], "format": "date-time",
                                          "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T"}
    assert sample["additionalProperties"] is False
    count = doc["paths"]["/v1/count"]["get"]["responses"]["200"]["content"]
    assert set(count) == {"text/event-stream", "application/x-ndjson"}
    r = await client.get("/docs", follow_redirects=True)
    assert r.status_code == 200 and "swagger-ui-bundle.js" in r.text
    assert (await client.get("/docs/swagger-ui-bundle.js")).status_code == 200
    assert (await client.get("/docs/swagger-initializer.js")).status_code == 200
    r = await client.get("/health")
    assert r.status_code == 200 and r.json()["services"] == {"agora.testing.v1.Mirror": "SERVING"}
    r = await client.get("/")
    assert r.status_code == 200 and "/docs" in r.text
    r = await client.get("/no-such-file.css")
    assert r.status_code == 404 and r.json()["code"] == 5


async def test_health_reports_unreachable(descriptor_set):
    import httpx

    from gateway.app import create_app

    app = create_app(descriptor_set, {"agora.testing.v1.Mirror": "127.0.0.1:1"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "NOT_SERVING"
        r = await c.get("/livez")  # the bridge itself is alive: probes must not restart it
        assert r.status_code == 200
        r = await c.get("/v1/samples/x")
        assert r.status_code == 503 and r.json()["code"] == 14
        # gRPC's own words ("failed to connect to all addresses; last error: ...") stay in the bridge
        assert r.json()["message"] \
            == "the service behind this route is not reachable right now; retry shortly"
    await app.state.bridge.upstreams.close()
