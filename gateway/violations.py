"""Why a JSON value does not fit a request message, as google.rpc.BadRequest field violations.

json_format says what went wrong in its own words ("expected string or bytes-like object, got
'int'", "'float' object is not iterable") and names Python types; a client needs the field and
what the contract expected there, in JSON's terms. When json_format refuses a value the codec asks
`explain` to walk the same value against the message descriptor and name each misfit:
`options[0]: expected a string, got a number`. json_format stays the parser; this module only
describes the refusal, so it follows the proto3 JSON mapping json_format implements.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.errors import BridgeError, bad_request

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1), _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1), _F.TYPE_UINT32: (0, 2**32 - 1), _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1), _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1), _F.TYPE_UINT64: (0, 2**64 - 1), _F.TYPE_FIXED64: (0, 2**64 - 1),
}  # fmt: skip
_FLOAT_WORDS = {"NaN", "Infinity", "-Infinity"}
_FLOAT32_MAX = 3.4028234663852886e38
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_MAX_REPORTED = 20  # a body with a thousand wrong items needs the first few, not a thousand lines

Violation = tuple[str, str]  # (field path, what is wrong)


def json_kind(value: Any) -> str:
    """The JSON word for a decoded value's kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a value JSON does not have"


def explain(value: Any, descriptor: Descriptor, prefix: str = "", *,
            lenient: bool = False) -> list[Violation]:
    """Every field of `value` (a decoded JSON object) that `descriptor` cannot take, and why;
    `lenient`: unknown keys are ignored (as json_format's ignore_unknown_fields)."""
    out: list[Violation] = []
    _message(value, descriptor, prefix, out, lenient)
    return out[:_MAX_REPORTED]


def summary(violations: list[Violation]) -> str:
    return "; ".join(f"{field}: {problem}" if field else problem for field, problem in violations)


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _expected(what: str, value: Any) -> str:
    return f"expected {what}, got {json_kind(value)}"


def _message(value: Any, descriptor: Descriptor, path: str, out: list[Violation],
             lenient: bool = False) -> None:
    name = descriptor.full_name
    if name.startswith("google.protobuf.") and _well_known(value, descriptor, path, out, lenient):
        return
    if not isinstance(value, dict):
        out.append((path, _expected(f"an object ({name})", value)))
        return
    by_json = {f.json_name: f for f in descriptor.fields}
    seen: dict[str, str] = {}
    for key, item in value.items():
        field = descriptor.fields_by_name.get(key) or by_json.get(key)
        if field is None:
            if lenient:
                continue
            known = ", ".join(f.json_name for f in descriptor.fields) or "none"
            out.append((_join(path, str(key)), f"unknown field; {name} has: {known}"))
            continue
        where = _join(path, str(key))  # the field as the client spelled it (json_name or proto name)
        if field.name in seen:
            out.append((where, f"given twice (as {seen[field.name]!r} and {key!r})"))
            continue
        seen[field.name] = key
        oneof = field.containing_oneof
        if oneof is not None and item is not None and not _synthetic(oneof):
            rivals = [f for f in oneof.fields if f is not field and f.name in seen
                      and value.get(seen[f.name]) is not None]
            if rivals:
                out.append((where, f"only one of {', '.join(f.name for f in oneof.fields)} may be set"))
                continue
        _field(item, field, where, out, lenient)


def _synthetic(oneof) -> bool:
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


def _field(value: Any, field: FieldDescriptor, path: str, out: list[Violation], lenient: bool) -> None:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        if value is None:
            return
        if not isinstance(value, dict):
            out.append((path, _expected("an object (a map)", value)))
            return
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        for key, item in value.items():
            where = f"{path}[{key}]"
            problem = _map_key(key, key_field)
            if problem:
                out.append((where, problem))
            elif item is None and value_field.message_type is None:
                out.append((where, "a map value must not be null"))
            else:
                _single(item, value_field, where, out, lenient)
        return
    if field.is_repeated:
        if value is None:
            if field.message_type is not None and field.message_type.full_name == "google.protobuf.Value":
                # json_format cannot clear this one with null
                out.append((path, _expected("an array", value)))
            return
        if not isinstance(value, list):
            out.append((path, _expected("an array", value)))
            return
        for i, item in enumerate(value):
            if item is None and not (field.message_type
                                     and field.message_type.full_name == "google.protobuf.Value"):
                out.append((f"{path}[{i}]", "an array item must not be null"))
            else:
                _single(item, field, f"{path}[{i}]", out, lenient)
        return
    if value is None:
        return  # null is the field's default
    _single(value, field, path, out, lenient)


def _map_key(key: str, field: FieldDescriptor) -> str | None:
    if field.type == _F.TYPE_BOOL:
        return None if key in ("true", "false") else "a map key here is true or false"
    if field.type in _INT_RANGES:
        low, high = _INT_RANGES[field.type]
        try:
            number = int(key)
        except ValueError:
            return "a map key here is an integer"
        return None if low <= number <= high else f"a map key here is an integer from {low} to {high}"
    return None


def _single(value: Any, field: FieldDescriptor, path: str, out: list[Violation],
            lenient: bool = False) -> None:
    if field.message_type is not None:
        _message(value, field.message_type, path, out, lenient)
        return
    problem = _scalar(value, field)
    if problem:
        out.append((path, problem))


def _scalar(value: Any, field: FieldDescriptor) -> str | None:
    kind = field.type
    if kind == _F.TYPE_STRING:
        return None if isinstance(value, str) else _expected("a string", value)
    if kind == _F.TYPE_BOOL:
        return None if isinstance(value, bool) else _expected("true or false", value)
    if kind == _F.TYPE_BYTES:
        if not isinstance(value, str):
            return _expected("base64 text", value)
        try:
            text = value.replace("-", "+").replace("_", "/")
            base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            return "expected base64 text (standard or URL-safe alphabet)"
        return None
    if kind == _F.TYPE_ENUM:
        return _enum(value, field)
    if kind in _INT_RANGES:
        return _integer(value, kind)
    return _float(value, kind)


def _enum(value: Any, field: FieldDescriptor) -> str | None:
    enum = field.enum_type
    names = ", ".join(v.name for v in enum.values)
    if enum.full_name == "google.protobuf.NullValue":
        return None if value is None else _expected("null", value)
    if isinstance(value, str):
        if value in enum.values_by_name:
            return None
        return f"{value!r} is not one of {names}"
    if isinstance(value, int) and not isinstance(value, bool):
        if -(2**31) <= value < 2**31:
            return None
        return f"{value} is out of range for an enum number"
    if isinstance(value, float) and value.is_integer() and -(2**31) <= value < 2**31:
        return None
    return _expected(f"one of {names} (or its number)", value)


def _integer(value: Any, kind: int) -> str | None:
    low, high = _INT_RANGES[kind]
    what = "an integer" if kind not in (_F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64,
                                         _F.TYPE_FIXED64) else "an integer (a number or a string of digits)"
    if isinstance(value, bool):
        return _expected(what, value)
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return f"expected {what}, got {value!r}"
        value = int(value)
    elif isinstance(value, str):
        try:
            if " " in value:
                raise ValueError
            value = int(value) if value.lstrip("-").isdigit() else _integral_text(value)
        except (ValueError, OverflowError):
            return f"expected {what}, got the text {value[:40]!r}"
    elif not isinstance(value, int):
        return _expected(what, value)
    if not low <= value <= high:
        return f"{value} is out of range: from {low} to {high}"
    return None


def _integral_text(text: str) -> int:
    number = float(text)
    if not math.isfinite(number) or not number.is_integer():
        raise ValueError
    return int(number)


def _float(value: Any, kind: int) -> str | None:
    if isinstance(value, bool):
        return _expected("a number", value)
    if isinstance(value, str):
        if value in _FLOAT_WORDS:
            return None
        try:
            value = float(value)
        except ValueError:
            return f"expected a number, got the text {value[:40]!r}"
        if math.isnan(value) or math.isinf(value):
            return "write NaN, Infinity or -Infinity for those values"
    elif not isinstance(value, (int, float)):
        return _expected("a number", value)
    if kind == _F.TYPE_FLOAT and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        return f"{value} is too large for a 32-bit floating-point number (at most {_FLOAT32_MAX:g})"
    return None


def _well_known(value: Any, descriptor: Descriptor, path: str, out: list[Violation], lenient: bool) -> bool:
    """Check a well-known type's JSON form; False when `descriptor` is an ordinary message."""
    name = descriptor.full_name
    if name in _WRAPPERS:
        if value is not None:
            _single(value, descriptor.fields_by_name["value"], path, out, lenient)
        return True
    parsers = {
        "google.protobuf.Timestamp": (timestamp_pb2.Timestamp,
                                      "an RFC 3339 timestamp such as 2024-05-01T12:00:00Z"),
        "google.protobuf.Duration": (duration_pb2.Duration, "a duration in seconds such as 1.5s"),
        "google.protobuf.FieldMask": (field_mask_pb2.FieldMask,
                                      "comma-separated field names such as name,price"),
    }
    if name in parsers:
        kind, what = parsers[name]
        if not isinstance(value, str):
            out.append((path, _expected(what, value)))
            return True
        try:
            kind().FromJsonString(value)
        except Exception:  # noqa: BLE001 - the parser's own text names Python internals
            out.append((path, f"expected {what}, got {value[:60]!r}"))
        return True
    if name == "google.protobuf.Struct":
        if not isinstance(value, dict):
            out.append((path, _expected("an object", value)))
        return True
    if name == "google.protobuf.ListValue":
        if not isinstance(value, list):
            out.append((path, _expected("an array", value)))
        return True
    if name == "google.protobuf.Value":
        return True
    if name == "google.protobuf.Empty":
        if not isinstance(value, dict) or value:
            out.append((path, _expected("an empty object", value)))
        return True
    if name == "google.protobuf.Any":
        if not isinstance(value, dict) or not isinstance(value.get("@type"), str):
            out.append((path, "expected an object with an \"@type\" naming its message type"))
        return True
    return False


def refusal(value: Any, descriptor: Descriptor, what: str = "body", *, lenient: bool = False) -> BridgeError:
    """The 400 for a value json_format refused: the violations, or the message type when none is found."""
    found = explain(value, descriptor, lenient=lenient)
    if not found:
        return bad_request(f"invalid {what}: it does not fit {descriptor.full_name}")
    return bad_request(f"invalid {what}: {summary(found)}", found)
