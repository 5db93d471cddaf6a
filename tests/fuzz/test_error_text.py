"""Hypothesis over the real Agora contract: a body or query the contract refuses is answered with
field violations in JSON's words — never Python's type names, exception names or a traceback.

Generated keys and texts come from a small alphabet that cannot spell a Python word, so any such
word in an answer is the server's own."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import descriptors
from gateway.codec import Codec
from gateway.errors import BridgeError
from gateway.routes import build_bindings
from tests.fuzz.python_words import PYTHON_WORDS

DESCRIPTORS = Path(__file__).resolve().parents[2] / "clients/python/agora/descriptors.binpb"
BUDGET = settings(max_examples=1500, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))

_text = st.text(alphabet="xyz019 -", max_size=8)
_scalar = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | _text
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(_text, inner, max_size=3), max_leaves=12)


@pytest.fixture(scope="module")
def api():
    ds = descriptors.load(DESCRIPTORS.read_bytes())
    return Codec(ds.pool), build_bindings(ds)


def _names(descriptor, depth: int = 0) -> list[str]:
    names: list[str] = []
    for f in descriptor.fields:
        names += [f.name, f.json_name]
        if f.message_type is not None and depth < 1:
            names += [f"{f.name}.{sub}" for sub in _names(f.message_type, depth + 1)]
    return names or ["x"]


def _body(descriptor, draw, depth: int = 0):
    """An object keyed by the message's own fields (plus one stranger), each value of any JSON kind."""
    fields = list(descriptor.fields)
    out = {}
    for f in (draw(st.lists(st.sampled_from(fields), max_size=4, unique_by=lambda f: f.name))
              if fields else []):
        if f.message_type is not None and depth < 2 and draw(st.booleans()):
            out[f.json_name] = _body(f.message_type, draw, depth + 1)
        else:
            out[f.json_name] = draw(_json)
    if draw(st.integers(0, 9)) == 0:
        out["zz"] = draw(_json)
    return out


def assert_readable(exc: BridgeError) -> None:
    texts = [exc.message]
    for detail in exc.body()["details"]:
        texts += [v["field"] + ": " + v["description"] for v in detail.get("fieldViolations", [])]
    for text in texts:
        assert not PYTHON_WORDS.search(text), text


@BUDGET
@given(data=st.data())
def test_refusals_speak_json_not_python(api, data):
    codec, bindings = api
    binding = data.draw(st.sampled_from(bindings))
    request = binding.method.input_type
    body = _body(request, data.draw) if binding.body else None
    items = data.draw(st.lists(st.tuples(st.sampled_from(_names(request) + ["zz"]), _text), max_size=4))
    try:
        binding.base_request(codec, {}, items, body)
    except BridgeError as exc:
        assert exc.http == 400, (binding.method.full_name, exc.http, exc.message)
        assert_readable(exc)
        if "invalid body" in exc.message:
            (detail,) = exc.body()["details"]  # a refused body always names its fields
            assert (detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
                    and detail["fieldViolations"])


def test_the_issue_examples(api):
    codec, bindings = api
    create_poll = next(b for b in bindings if b.method.full_name == "agora.polls.v1.PollService.CreatePoll")
    with pytest.raises(BridgeError) as refused:
        create_poll.base_request(codec, {}, (), {"question": "q", "options": [1, 2]})
    assert refused.value.body()["details"][0]["fieldViolations"][0] == {
        "field": "options[0]", "description": "expected a string, got a number"}
    product = next(b for b in bindings
                   if b.method.full_name == "agora.catalog.v1.CatalogService.CreateProduct")
    with pytest.raises(BridgeError) as refused:
        product.base_request(codec, {}, (), {"name": "p", "price": 9.5})  # body: "product"
    (violation,) = refused.value.body()["details"][0]["fieldViolations"]
    assert violation["field"].endswith("price") and "expected an object" in violation["description"]
    assert_readable(refused.value)
