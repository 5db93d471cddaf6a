"""JSON and query strings -> protobuf: arbitrary input either builds a message or is a clean 400."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import descriptors
from gateway.codec import Codec
from gateway.errors import BridgeError
from gateway.routes import RouteTable, build_bindings

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_FIELDS = [
    "name", "int32Value", "int64_value", "uint64Value", "flag", "ratio", "score", "blob", "color", "tags",
    "numbers", "colors", "inner", "inners", "labels", "at", "ttl", "mask", "nick", "limit", "enabled", "big",
    "attrs", "dynamic", "items", "extra", "nothing", "note", "text", "number", "bogus",
]


@pytest.fixture(scope="module")
def api(descriptor_set):
    ds = descriptors.load(descriptor_set)
    table = RouteTable(build_bindings(ds))
    return ds, Codec(ds.pool), table


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=6))
def test_json_body_builds_or_400(api, body):
    _, codec, table = api
    binding, values = table.resolve("POST", "/v1/samples")
    try:
        message = binding.base_request(codec, values, (), codec.load_json(json.dumps(body).encode()))
    except BridgeError as exc:
        assert exc.http == 400 and exc.code == 3
        return
    codec.dumps(message)  # whatever was accepted also renders


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.binary(max_size=64))
def test_raw_bytes_body_builds_or_400(api, raw):
    _, codec, table = api
    binding, values = table.resolve("POST", "/v1/samples")
    try:
        binding.base_request(codec, values, (), codec.load_json(raw))
    except BridgeError as exc:
        assert exc.http == 400


_param_names = st.sampled_from(_FIELDS + ["inner.label", "inner.size", "inner.color", "labels[k]", "inner.x",
                                          "a.b"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(st.lists(st.tuples(_param_names, st.text(max_size=12)), max_size=6), st.text(max_size=8))
def test_query_and_path_build_or_400(api, params, name):
    _, codec, table = api
    binding, values = table.resolve("GET", "/v1/samples/x")
    values = {"name": name}
    try:
        message = binding.base_request(codec, values, params, None)
    except BridgeError as exc:
        assert exc.http == 400
        return
    assert message.name == name
    codec.dumps(message)
