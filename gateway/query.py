"""Fill a request message from query (and path) parameters: repeated, nested a.b, maps, enums, WKTs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.errors import bad_request

_F = FieldDescriptor
_INTS = {
    _F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32, _F.TYPE_UINT32, _F.TYPE_FIXED32,
    _F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64, _F.TYPE_UINT64, _F.TYPE_FIXED64,
}  # fmt: skip
_FLOATS = {_F.TYPE_FLOAT, _F.TYPE_DOUBLE}
_FLOAT_WORDS = {"NaN", "Infinity", "-Infinity"}

# Well-known types a query string carries as one value, in their proto3 JSON string form.
STRING_WKTS = {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
JSON_WKTS = {"google.protobuf.Struct", "google.protobuf.ListValue", "google.protobuf.Value",
             "google.protobuf.Any"}


def is_leaf_message(descriptor: Descriptor) -> bool:
    """Messages a single query value can fill."""
    name = descriptor.full_name
    return name in STRING_WKTS or name in WRAPPERS or name in JSON_WKTS


def find_field(descriptor: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by proto name or lowerCamelCase JSON name."""
    field = descriptor.fields_by_name.get(name)
    if field is None:
        field = _json_names(descriptor).get(name)
    return field


def resolve(descriptor: Descriptor, dotted: str) -> list[FieldDescriptor] | None:
    """Walk a dotted field path (either naming style); None when any step is unknown."""
    fields: list[FieldDescriptor] = []
    current: Descriptor | None = descriptor
    for part in dotted.split("."):
        if current is None:
            return None
        field = find_field(current, part)
        if field is None:
            return None
        fields.append(field)
        current = field.message_type if field.message_type is not None and not is_leaf_message(
            field.message_type
        ) and not _is_map(field) else None
    return fields


def scalar_json(field: FieldDescriptor, text: str, param: str) -> Any:
    """A query/path string as the proto3 JSON value json_format expects for this field."""
    if field.message_type is not None:
        name = field.message_type.full_name
        if name in STRING_WKTS:
            return text
        if name in WRAPPERS:
            return scalar_json(field.message_type.fields_by_name["value"], text, param)
        if name in JSON_WKTS:
            try:
                return json.loads(text)
            except (ValueError, RecursionError):
                if name == "google.protobuf.Value":
                    return text  # a bare word is a string Value
                raise _bad(param, f"expected JSON for {name}") from None
        raise _bad(param, f"names message field {field.name!r}; set its subfields")
    kind = field.type
    if kind == _F.TYPE_BOOL:
        lowered = text.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0", ""):
            return False
        raise _bad(param, f"{text!r} is not a boolean")
    if kind in _INTS:
        try:
            return int(text)
        except ValueError:
            raise _bad(param, f"{text!r} is not an integer") from None
    if kind in _FLOATS:
        if text in _FLOAT_WORDS:
            return text
        try:
            value = float(text)
        except ValueError:
            raise _bad(param, f"{text!r} is not a number") from None
        if math.isnan(value) or math.isinf(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return value
    return text  # string, bytes (base64) and enums (name or number) go to json_format as text


def params_to_json(
    descriptor: Descriptor,
    params: Iterable[tuple[str, str]],
    *,
    skip: frozenset[str] = frozenset(),
    lenient: bool = False,
) -> dict[str, Any]:
    """Query pairs -> a proto3 JSON dict. A name that is no field of the request is refused with a
    400 naming it, as Envoy's reject_unknown_query_parameters does, unless `lenient` (a binding
    whose HTTP profile ignores unknown fields), when it is ignored as grpc-gateway does."""
    out: dict[str, Any] = {}
    for key, text in params:
        map_key = None
        if key.endswith("]") and "[" in key:
            key, _, map_key = key[:-1].partition("[")
        fields = resolve(descriptor, key)
        if not fields:
            if lenient:
                continue
            raise unknown_parameter(descriptor, key)
        proto_path = ".".join(f.name for f in fields)
        if _skipped(proto_path, skip):
            continue
        leaf = fields[-1]
        node = out
        for f in fields[:-1]:
            if f.is_repeated:
                raise _bad(key, f"cannot address inside repeated field {f.name!r}")
            node = node.setdefault(f.json_name, {})
            if not isinstance(node, dict):
                raise _bad(key, "conflicts with another parameter")
        if _is_map(leaf):
            if map_key is None:
                raise _bad(key, f"a map; use {key}[key]=value")
            value_field = leaf.message_type.fields_by_name["value"]
            node.setdefault(leaf.json_name, {})[map_key] = scalar_json(value_field, text, key)
        elif leaf.is_repeated:
            node.setdefault(leaf.json_name, []).append(scalar_json(leaf, text, key))
        else:
            node[leaf.json_name] = scalar_json(leaf, text, key)
    return out


def _bad(param: str, problem: str):
    return bad_request(f"parameter {param!r}: {problem}", [(param, problem)])


def refuse_any(descriptor: Descriptor, params: Iterable[tuple[str, str]], *, lenient: bool = False) -> None:
    """For a binding whose body carries every field: any query parameter is unknown."""
    if lenient:
        return
    for key, _ in params:
        raise unknown_parameter(descriptor, key, "the request body carries every field")


def unknown_parameter(descriptor: Descriptor, name: str, why: str = ""):
    """The 400 for a query parameter that names no field, listing the names that do exist."""
    known = ", ".join(f.json_name for f in descriptor.fields) or "none"
    problem = f"unknown query parameter; {why or f'{descriptor.full_name} has: {known}'}"
    return bad_request(f"query parameter {name!r}: {problem}", [(name, problem)])


def path_params_to_json(descriptor: Descriptor, values: dict[str, str]) -> dict[str, Any]:
    """Path variables -> a proto3 JSON dict; the route was validated at start-up, so paths resolve."""
    out: dict[str, Any] = {}
    for dotted, text in values.items():
        fields = resolve(descriptor, dotted) or []
        node = out
        for f in fields[:-1]:
            node = node.setdefault(f.json_name, {})
        node[fields[-1].json_name] = scalar_json(fields[-1], text, dotted)
    return out


def _skipped(proto_path: str, skip: frozenset[str]) -> bool:
    if proto_path in skip:
        return True
    return any(proto_path.startswith(s + ".") for s in skip)


def _is_map(field: FieldDescriptor) -> bool:
    mt = field.message_type
    return mt is not None and mt.GetOptions().map_entry


_json_cache: dict[str, dict[str, FieldDescriptor]] = {}


def _json_names(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    names = _json_cache.get(descriptor.full_name)
    if names is None:
        names = {f.json_name: f for f in descriptor.fields}
        _json_cache[descriptor.full_name] = names
    return names
