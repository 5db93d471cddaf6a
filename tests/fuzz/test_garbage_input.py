"""Garbage to every /v1 operation of a running mesh: wrong-typed and malformed JSON bodies, wrong-typed
query values. Every answer is a 4xx (or a success) in JSON's words: never a 5xx, never Python's type
names, exception text or a traceback. Fixed seed, bounded size; the case count is printed.

Also: an anonymous write to a signed-in-only method is 401 whatever its body (authentication and
access come before the request's rules), and the same body signed in is the 400 naming the field."""

from __future__ import annotations

import json
import random
import re

import httpx

from tests.fuzz.python_words import PYTHON_WORDS
from tests.fuzz.test_schemathesis_mesh import STREAMS
from tests.security.conftest import bearer, sign_up

SEED = 20261203
PER_OPERATION = 12
# Named in issue 18: what a library's own text looks like when it leaks.
LEAKS = re.compile(r"'int'|'float'|NoneType|bytes-like|object is not|Traceback|expected string or")
WRONG = [1, -7, 2.5, 1e308, True, False, None, "", "x", "zz-9", [], [1, "a"], {}, {"a": 1}, [[None]],
         {"": []}]
RAW = [b"{", b"[1,", b"\x00\xff", b"nul", b"{\"a\":}", b"1e99999", b"\"\\ud800\"", b"{\"a\":1,}"]


def _operations(spec: dict):
    for path, ops in sorted(spec["paths"].items()):
        if not path.startswith("/v1/"):
            continue
        for method, op in sorted(ops.items()):
            if (method not in ("get", "post", "put", "patch", "delete")
                    or any(s in op.get("operationId", "") for s in STREAMS)):
                continue
            yield method.upper(), path, op


def _properties(spec: dict, op: dict) -> list[str]:
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return sorted(schema.get("properties", {})) or ["x"]


def _cases(rng: random.Random, spec: dict, method: str, path: str, op: dict):
    url = re.sub(r"\{[^}]+\}", "x1", path)
    query = [p["name"] for p in op.get("parameters", []) if p.get("in") == "query"]
    has_body = "requestBody" in op
    props = _properties(spec, op)
    for i in range(PER_OPERATION):
        if has_body and i % 4 == 3:
            yield url, {}, rng.choice(RAW)
        elif has_body:
            body = {p: rng.choice(WRONG) for p in rng.sample(props, min(len(props), rng.randint(1, 3)))}
            if rng.random() < 0.3:
                body = rng.choice(WRONG)  # not even an object
            yield url, {}, json.dumps(body).encode()
        elif query:
            params = {q: rng.choice(["abc", "-1", "1.5", "true", "", "9" * 30, "null", "[]", "%zz", "\u00e9"])
                      for q in rng.sample(query, min(len(query), rng.randint(1, 3)))}
            yield url, params, None
        else:
            yield url, {"zz": str(i)}, None


def _clean(text: str, sent: bytes | None, params: dict) -> str:
    for s in [*(params.values()), *(params.keys()), (sent or b"").decode("utf-8", "replace")]:
        if len(s) >= 3:
            text = text.replace(s, "")
    return text


async def test_garbage_to_every_v1_operation_is_a_clear_4xx(fuzz_mesh):
    rng = random.Random(SEED)
    counts: dict[int, int] = {}
    bad: list[str] = []
    cases = operations = 0
    async with httpx.AsyncClient(base_url=fuzz_mesh.base_url, timeout=15) as http:
        spec = (await http.get("/openapi.json")).json()
        for method, path, op in _operations(spec):
            operations += 1
            for url, params, body in _cases(rng, spec, method, path, op):
                cases += 1
                r = await http.request(method, url, params=params, content=body,
                                       headers={"content-type": "application/json"}
                                       if body is not None else {})
                counts[r.status_code] = counts.get(r.status_code, 0) + 1
                text = _clean(r.text, body, params)
                leak = LEAKS.search(text) or PYTHON_WORDS.search(text)
                if r.status_code >= 500 or leak:
                    bad.append(f"{method} {url} {params} {body!r:.80} -> {r.status_code} {r.text[:200]}")
    print(f"\ngarbage fuzz: {cases} cases over {operations} /v1 operations, seed {SEED}; "
          f"statuses {sorted(counts.items())}")
    assert fuzz_mesh.alive(), fuzz_mesh.log_text()[-3000:]
    assert not bad, "\n".join(bad[:20])


async def test_anonymous_write_to_a_signed_in_method_is_401_before_its_rules(fuzz_mesh):
    async with httpx.AsyncClient(base_url=fuzz_mesh.base_url, timeout=15) as http:
        for path, body in (("/v1/auctions", {}), ("/v1/auctions", {"productName": ""}),
                           ("/v1/rooms", {"roomId": "No Slug"})):
            r = await http.post(path, json=body)
            assert r.status_code == 401, (path, body, r.status_code, r.text)
        user = await sign_up(http)
        r = await http.post("/v1/rooms", json={"roomId": "No Slug"}, headers=bearer(user))
        assert r.status_code == 400, r.text
        fields = [v["field"] for d in r.json()["details"] for v in d.get("fieldViolations", [])]
        assert "room_id" in fields or "roomId" in fields, r.text


async def test_type_errors_name_the_field_and_what_it_takes(fuzz_mesh):
    async with httpx.AsyncClient(base_url=fuzz_mesh.base_url, timeout=15) as http:
        r = await http.post("/v1/polls", json={"question": "q?", "options": [1, 2]})
        assert r.status_code == 400, r.text
        assert "options[0]: expected a string, got a number" in r.json()["message"], r.text
        r = await http.post("/v1/products", json={"name": "lamp", "price": 12})
        assert r.status_code == 400, r.text
        print(f"\n{r.json()['message']}")
        assert ("product.price: expected an object (agora.common.v1.Money), got a number"
                in r.json()["message"]), r.text
