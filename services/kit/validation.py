"""The request rules the protos declare, enforced once for every service: presence from
`(google.api.field_behavior) = REQUIRED` (AIP-203) and bounds from `(agora.api.v1.field)`.

A request that breaks them is refused with INVALID_ARGUMENT and one google.rpc.BadRequest
violation per field, before the servicer runs; the domain keeps the rules a declaration cannot
state (uniqueness, one field depending on another, the state of the world). The OpenAPI document
states the same declarations (gateway/openapi.py), so what it says is what is enforced.

Semantics (protos/README.md documents them for proto authors):
- REQUIRED: a string or list not empty, a message present, an enum not its zero value, a number
  not zero (proto3 cannot tell an unset number from zero). Under an update request (one with an
  `update_mask`), the resource's REQUIRED fields are not demanded: a patch names what it changes.
- String and bytes bounds apply to a value that is set (not empty); number bounds to every value,
  zero included (proto3 cannot tell zero from unset). On a repeated field the string and number
  bounds apply to each item (an empty item included) and min_items / max_items to the list.
- Enums are closed: a number the enum does not declare is refused (proto3 itself would pass it on).
- OUTPUT_ONLY fields in a request are ignored (AIP-203), not refused.
- The frames of a client stream are not checked here: ending the call for one bad frame would be
  wrong where the domain answers it in-band (chat's `rejected`) and the stream goes on.

protovalidate is the library for this, and it could be had from the reachable registries, though
not from PyPI alone (checked): protovalidate 2.x on PyPI runs on another protobuf runtime
(protobuf-py) and ships no .proto; protovalidate 1.x works on google.protobuf (with cel-python 0.2
and google-re2, both on PyPI) but ships neither buf/validate/validate.proto nor its generated stubs,
which it expects from Buf's registry, and buf cannot fetch buf.build/bufbuild/protovalidate here.
Maven Central's build.buf:protovalidate jar does carry buf/validate/validate.proto, so adopting it
means extracting that file at build time (as googleapis' protos come from a package), generating
its stubs, and moving the declarations to buf.validate rules. Until then this module is the small
subset the contract needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agora.api.v1 import options_pb2
from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from services.kit.errors import InvalidArgument

_F = FieldDescriptor
_REQUIRED = field_behavior_pb2.REQUIRED
_NUMBERS = {
    _F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32, _F.TYPE_UINT32, _F.TYPE_FIXED32, _F.TYPE_INT64,
    _F.TYPE_SINT64, _F.TYPE_SFIXED64, _F.TYPE_UINT64, _F.TYPE_FIXED64, _F.TYPE_FLOAT, _F.TYPE_DOUBLE,
}  # fmt: skip
_MAX_REPORTED = 20


def behaviors(f: FieldDescriptor) -> set[int]:
    """The field's google.api.field_behavior values."""
    opts = f.GetOptions()
    return set(opts.Extensions[field_behavior_pb2.field_behavior]) if opts is not None else set()


def rules(f: FieldDescriptor) -> options_pb2.FieldRules | None:
    """The field's (agora.api.v1.field) bounds, or None."""
    opts = f.GetOptions()
    if opts is None or not opts.HasExtension(options_pb2.field):
        return None
    return opts.Extensions[options_pb2.field]


@dataclass
class _FieldCheck:
    field: FieldDescriptor
    required: bool
    rules: options_pb2.FieldRules | None
    pattern: re.Pattern[str] | None
    nested: _MessageCheck | None = None


@dataclass
class _MessageCheck:
    checks: list[_FieldCheck] = field(default_factory=list)
    partial: bool = False  # an update request: the resource's REQUIRED fields are not demanded

    @property
    def empty(self) -> bool:
        return not self.checks


_compiled: dict[str, _MessageCheck] = {}


def _compile(descriptor: Descriptor) -> _MessageCheck:
    known = _compiled.get(descriptor.full_name)
    if known is not None:
        return known
    check = _MessageCheck(partial="update_mask" in descriptor.fields_by_name)
    _compiled[descriptor.full_name] = check  # before recursing: messages may contain themselves
    for f in descriptor.fields:
        required = _REQUIRED in behaviors(f)
        bounds = rules(f)
        nested = None
        mt = f.message_type
        if (mt is not None and not mt.GetOptions().map_entry
                and not mt.full_name.startswith("google.protobuf.")):
            nested = _compile(mt)
        closed_enum = f.type == _F.TYPE_ENUM and f.enum_type.full_name != "google.protobuf.NullValue"
        if required or bounds is not None or closed_enum or (nested is not None and not nested.empty):
            pattern = re.compile(bounds.pattern) if bounds is not None and bounds.pattern else None
            check.checks.append(_FieldCheck(f, required, bounds, pattern, nested))
    return check


def violations(message: Message, prefix: str = "", *, partial: bool = False) -> dict[str, str]:
    """field path -> what is wrong, for every declared rule `message` breaks."""
    out: dict[str, str] = {}
    _walk(message, _compile(message.DESCRIPTOR), prefix, partial, out)
    return out


def check(request: Any) -> Any:
    """The request, or InvalidArgument naming every field that breaks a declared rule."""
    if not isinstance(request, Message):
        return request
    found = violations(request)
    if found:
        raise InvalidArgument.fields(dict(list(found.items())[:_MAX_REPORTED]))
    return request


def _walk(message: Message, spec: _MessageCheck, prefix: str, partial: bool, out: dict[str, str]) -> None:
    for c in spec.checks:
        f = c.field
        path = f"{prefix}{f.name}"
        value = getattr(message, f.name)
        if f.is_repeated:
            if c.required and not partial and len(value) == 0:
                out[path] = "must not be empty"
                continue
            if c.rules is not None:
                _count(c.rules, len(value), path, out)
            if f.message_type is None:
                for i, item in enumerate(value):
                    _value(c, item, f"{path}[{i}]", out)
                    if f.type == _F.TYPE_ENUM:
                        _declared(f, item, f"{path}[{i}]", out)
            elif c.nested is not None and not f.message_type.GetOptions().map_entry:
                for i, item in enumerate(value):
                    _walk(item, c.nested, f"{path}[{i}].", partial or spec.partial, out)
            continue
        if f.message_type is not None:
            if not message.HasField(f.name):
                if c.required and not partial:
                    out[path] = "is required"
                continue
            if c.nested is not None:
                _walk(value, c.nested, f"{path}.", partial or spec.partial, out)
            continue
        if f.type == _F.TYPE_ENUM:
            _declared(f, value, path, out)
        if not _is_set(f, value):
            if c.required and not partial:
                out[path] = _missing(f)
                continue
            if f.type not in _NUMBERS:
                continue  # an empty string keeps no string bound; a zero number keeps its range
        _value(c, value, path, out)


def _declared(f: FieldDescriptor, number: int, path: str, out: dict[str, str]) -> None:
    """Enums are closed: proto3 lets a client send any number, the contract has the declared ones."""
    if number not in f.enum_type.values_by_number:
        names = ", ".join(v.name for v in f.enum_type.values)
        out[path] = f"{number} is not one of {names}"


def _is_set(f: FieldDescriptor, value: Any) -> bool:
    return bool(value) if f.type != _F.TYPE_ENUM else value != 0


def _missing(f: FieldDescriptor) -> str:
    if f.type == _F.TYPE_ENUM:
        return (f"must be set (not {f.enum_type.values_by_number[0].name})"
                if 0 in f.enum_type.values_by_number else "must be set")
    if f.type in _NUMBERS:
        return "must not be zero"
    return "must not be empty"


def _count(r: options_pb2.FieldRules, n: int, path: str, out: dict[str, str]) -> None:
    low = r.min_items if r.HasField("min_items") else None
    high = r.max_items if r.HasField("max_items") else None
    if (low is not None and n < low) or (high is not None and n > high):
        out[path] = f"needs {_span(low, high)} items (got {n})"


def _span(low, high) -> str:
    if low is not None and high is not None:
        return f"{low:g} to {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


def _value(c: _FieldCheck, value: Any, path: str, out: dict[str, str]) -> None:
    r = c.rules
    if r is None:
        return
    if isinstance(value, str):
        n = len(value)
        low = r.min_len if r.HasField("min_len") else None
        high = r.max_len if r.HasField("max_len") else None
        if (low is not None and n < low) or (high is not None and n > high):
            out[path] = f"must be {_span(low, high)} characters (got {n})"
        elif r.HasField("max_bytes") and len(value.encode()) > r.max_bytes:
            out[path] = f"must be at most {r.max_bytes} bytes of UTF-8"
        elif c.pattern is not None and not c.pattern.search(value):
            out[path] = (f"must be {r.pattern_description}" if r.pattern_description
                         else _pattern_text(r.pattern))
        return
    if isinstance(value, bytes):
        if r.HasField("max_bytes") and len(value) > r.max_bytes:
            out[path] = f"must be at most {r.max_bytes} bytes (got {len(value)})"
        return
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low = r.gte if r.HasField("gte") else None
        high = r.lte if r.HasField("lte") else None
        if (low is not None and value < low) or (high is not None and value > high):
            out[path] = f"must be {_span(low, high)} (got {value:g})"


def _pattern_text(pattern: str) -> str:
    return "must not be blank" if pattern == r"\S" else f"must match the pattern {pattern}"
