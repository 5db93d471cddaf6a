"""Path templates: every form compiles and matches; the matcher never raises on arbitrary paths."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.templates import TemplateError, compile_template


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("/v1/samples", "/v1/samples", {}),
        ("/v1/samples/{name}", "/v1/samples/abc", {"name": "abc"}),
        ("/v1/samples/{name}", "/v1/samples/a%20b", {"name": "a b"}),
        ("/v1/samples/{name}", "/v1/samples/a%2Fb", {"name": "a/b"}),
        ("/v1/inner/{inner.label}/samples/{int32_value}", "/v1/inner/x/samples/7",
         {"inner.label": "x", "int32_value": "7"}),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books/2", {"name": "shelves/1/books/2"}),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/1%2F2/books/3", {"name": "shelves/1%2F2/books/3"}),
        ("/v1/files/{name=**}", "/v1/files/a/b/c.txt", {"name": "a/b/c.txt"}),
        ("/v1/files/{name=**}", "/v1/files", {"name": ""}),
        ("/v1/any/*/samples/{name}", "/v1/any/zzz/samples/q", {"name": "q"}),
        ("/v1/samples:echo", "/v1/samples:echo", {}),
        ("/v1/samples/{name}:publish", "/v1/samples/n1:publish", {"name": "n1"}),
        ("/v1/**", "/v1/x/y", {}),
    ],
)
def test_template_matches(template, path, expected):
    assert compile_template(template).match(path) == expected


@pytest.mark.parametrize(
    ("template", "path"),
    [
        ("/v1/samples", "/v1/samples/x"),
        ("/v1/samples/{name}", "/v1/samples"),
        ("/v1/samples/{name}", "/v1/samples/"),
        ("/v1/samples/{name}", "/v1/samples/a/b"),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books"),
        ("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/cds/2"),
        ("/v1/samples:echo", "/v1/samples"),
        ("/v1/samples/{name}:publish", "/v1/samples/n1"),
        ("/v1/samples/{name}", "v1/samples/x"),
    ],
)
def test_template_rejects(template, path):
    assert compile_template(template).match(path) is None


@pytest.mark.parametrize(
    "bad", ["v1/x", "/v1/{name", "/v1/name}", "/v1/**/x", "/v1/{a}/{a}", "/v1/{1bad}", "/v1//x",
            "/v1/{a={b}}"]
)
def test_bad_templates_raise(bad):
    with pytest.raises(TemplateError):
        compile_template(bad)


def test_openapi_path_and_pattern():
    t = compile_template("/v1/{name=shelves/*/books/*}:get")
    assert t.openapi_path() == "/v1/{name}:get"
    assert t.variable_pattern(t.variables[0]) == "^shelves/[^/]+/books/[^/]+$"


_segment = st.text(alphabet="abcxyz019_-.%2F:", min_size=0, max_size=6)
_paths = st.lists(_segment, max_size=6).map(lambda parts: "/" + "/".join(parts))
_TEMPLATES = [
    compile_template(t)
    for t in (
        "/v1/samples/{name}", "/v1/{name=shelves/*/books/*}", "/v1/files/{name=**}", "/v1/samples:echo",
        "/v1/samples/{name}:publish", "/v1/inner/{inner.label}/samples/{int32_value}",
        "/v1/any/*/samples/{name}",
    )
]


@given(_paths)
def test_matcher_total_on_arbitrary_paths(path):
    for t in _TEMPLATES:
        result = t.match(path)
        assert result is None or set(result) == {v.field_path for v in t.variables}


@given(st.lists(st.text(alphabet="abc012", min_size=1, max_size=5), min_size=2, max_size=2))
def test_named_segments_round_trip(parts):
    shelf, book = parts
    t = compile_template("/v1/{name=shelves/*/books/*}")
    assert t.match(f"/v1/shelves/{shelf}/books/{book}") == {"name": f"shelves/{shelf}/books/{book}"}
