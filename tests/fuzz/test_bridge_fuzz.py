"""Hypothesis over the real Agora contract: every route's JSON body / path / query -> protobuf path, and
the path-template matcher, with a fixed budget. Arbitrary input builds a message or raises a clean
BridgeError (a 4xx); nothing else escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import descriptors
from gateway.codec import Codec
from gateway.errors import BridgeError
from gateway.routes import RouteTable, build_bindings
from gateway.templates import TemplateError, compile_template

DESCRIPTORS = Path(__file__).resolve().parents[2] / "clients/python/agora/descriptors.binpb"
BUDGET = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))

_scalar = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats()
           | st.text(max_size=20))
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)
_segment = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@pytest.fixture(scope="module")
def api():
    ds = descriptors.load(DESCRIPTORS.read_bytes())
    bindings = build_bindings(ds)
    return Codec(ds.pool), bindings, RouteTable(bindings)


def _field_names(binding) -> list[str]:
    names = []
    for f in binding.method.input_type.fields:
        names += [f.name, f.json_name]
        if f.message_type is not None:
            names += [f"{f.name}.{g.name}" for g in f.message_type.fields]
    return names or ["x"]


@BUDGET
@given(data=st.data())
def test_json_body_path_and_query_build_a_message_or_a_clean_400(api, data):
    codec, bindings, _ = api
    binding = data.draw(st.sampled_from(bindings))
    names = _field_names(binding)
    body = data.draw(st.one_of(_json, st.dictionaries(st.sampled_from(names), _json, max_size=6)))
    raw = data.draw(st.one_of(st.just(json.dumps(body).encode()), st.binary(max_size=64)))
    path_values = {v.field_path: data.draw(_segment) for v in binding.template.variables}
    items = data.draw(st.lists(st.tuples(st.sampled_from(names + ["zz", "a.b.c"]), st.text(max_size=16)),
                               max_size=5))
    try:
        value = codec.load_json(raw) if binding.body else None
        binding.base_request(codec, path_values, items, value)
    except BridgeError as exc:
        assert 400 <= exc.http < 500, (binding.method.full_name, exc.http, exc.message)


@BUDGET
@given(method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"]),
       path=st.one_of(st.lists(_segment, max_size=6).map(lambda s: "/" + "/".join(s)),
                      st.text(max_size=60),
                      st.sampled_from(["/v1/polls/x:watch", "/v1/orders/%2F:cancel", "//", "/:"])))
def test_route_table_resolves_or_says_404_405(api, method, path):
    _, _, table = api
    try:
        binding, values = table.resolve(method, path)
        assert isinstance(values, dict)
    except BridgeError as exc:
        assert exc.http in (404, 405), exc.http


@BUDGET
@given(source=st.one_of(st.text(max_size=40),
                        st.lists(st.sampled_from(["v1", "{x}", "{y=a/*}", "*", "**", ":verb",
                                                  "{", "}", "=", "/"]),
                                 max_size=8).map(lambda parts: "/" + "/".join(parts))),
       path=st.text(max_size=40))
def test_template_compiler_and_matcher_never_crash(source, path):
    try:
        template = compile_template(source)
    except TemplateError:
        return
    values = template.match(path)
    assert values is None or isinstance(values, dict)
