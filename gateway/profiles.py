"""HTTP profiles: how a binding speaks JSON when its method declares `(agora.api.v1.http_profile)`.

A profile is how the seed systems' own wire contracts are expressed without the bridge knowing any
domain: exact keys (json_name), Go-style decoding (unknown keys ignored, keys matched whatever
their case), omitempty encoding, integer enums, a success status, and error bodies in the seed's
shape. Bindings without a profile take none of these paths, so the hot path is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agora.api.v1 import options_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor

BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@dataclass(frozen=True)
class ErrorRule:
    codes: frozenset[int]
    status: int
    body: int  # options_pb2.HttpErrorBody
    key: str
    text: str


@dataclass(frozen=True)
class Profile:
    """The parsed option, for one binding."""

    success_status: int = 200
    ignore_unknown_fields: bool = False
    case_insensitive_keys: bool = False
    omit_empty: bool = False
    integer_enums: bool = False
    errors: tuple[ErrorRule, ...] = ()
    upgrade_after_headers: bool = False
    bad_frame_reply: str = ""
    issue_csrf_token: bool = False

    def render_error(self, status: int, body: dict[str, Any]) -> tuple[int, Any]:
        """(HTTP status, body) for an error on this binding: the first rule naming its code, else as given."""
        code = int(body.get("code", 0))
        for rule in self.errors:
            if code not in rule.codes:
                continue
            out_status = rule.status or status
            if rule.body == options_pb2.HTTP_ERROR_BODY_FIELD_MAP:
                problems = field_violations(body)
                if problems:
                    return out_status, problems
                # No field named: the message still reaches the client, under the rule's key.
                return out_status, {rule.key or "error": rule.text or body.get("message", "")}
            if rule.body == options_pb2.HTTP_ERROR_BODY_MESSAGE:
                return out_status, {rule.key or "message": rule.text or body.get("message", "")}
            return out_status, body
        return status, body


def field_violations(body: dict[str, Any]) -> dict[str, str]:
    """{field: description} from the google.rpc.BadRequest details of an error body (first one per field)."""
    out: dict[str, str] = {}
    for detail in body.get("details") or ():
        if isinstance(detail, dict) and detail.get("@type") == BAD_REQUEST_TYPE:
            for v in detail.get("fieldViolations") or ():
                out.setdefault(str(v.get("field", "")), str(v.get("description", "")))
    return out


def method_profile(options: descriptor_pb2.MethodOptions) -> options_pb2.HttpProfile | None:
    """The method's profile option, if it declares one."""
    if not options.HasExtension(options_pb2.http_profile):
        return None
    profile = options_pb2.HttpProfile()
    profile.CopyFrom(options.Extensions[options_pb2.http_profile])
    return profile


def for_binding(p: options_pb2.HttpProfile | None, http_method: str, path: str) -> Profile | None:
    """The profile covering "<METHOD> <path>", or None (the bridge's own behaviour)."""
    if p is None or (p.bindings and f"{http_method} {path}" not in p.bindings):
        return None
    return Profile(
        success_status=p.success_status or 200,
        ignore_unknown_fields=p.ignore_unknown_fields,
        case_insensitive_keys=p.case_insensitive_keys,
        omit_empty=p.omit_empty,
        integer_enums=p.integer_enums,
        errors=tuple(
            ErrorRule(frozenset(r.codes), r.status, r.body, r.key, r.text) for r in p.errors
        ),
        upgrade_after_headers=p.websocket_upgrade_after_headers,
        bad_frame_reply=p.websocket_bad_frame_reply,
        issue_csrf_token=p.issue_csrf_token,
    )


def fold_keys(value: Any, descriptor: Descriptor) -> Any:
    """Rename a JSON object's keys to the fields' json_name when they match whatever their case.

    Go's encoding/json matches keys to struct fields case-insensitively; this gives json_format the
    exact names it expects. Keys that match no field are left as they are (refused, or dropped when
    the profile ignores unknown fields). Nested messages, repeated messages and map values of
    message type are folded too.
    """
    if not isinstance(value, dict):
        return value
    by_folded = _folded_names(descriptor)
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = by_folded.get(key.casefold()) if isinstance(key, str) else None
        if field is None:
            out[key] = item
            continue
        out[field.json_name] = _fold_field(item, field)
    return out


def _fold_field(item: Any, field: FieldDescriptor) -> Any:
    message = field.message_type
    if message is None or message.full_name.startswith("google.protobuf."):
        return item  # scalars and well-known types (Timestamp, Value, Struct) keep their own form
    if message.GetOptions().map_entry:
        value_field = message.fields_by_name["value"]
        if value_field.message_type is None or not isinstance(item, dict):
            return item
        return {k: fold_keys(v, value_field.message_type) for k, v in item.items()}
    if field.is_repeated and isinstance(item, list):
        return [fold_keys(v, message) for v in item]
    return fold_keys(item, message)


_FOLDED: dict[str, dict[str, FieldDescriptor]] = {}


def _folded_names(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    names = _FOLDED.get(descriptor.full_name)
    if names is None:
        names = {}
        for f in descriptor.fields:
            names.setdefault(f.name.casefold(), f)
            names.setdefault(f.json_name.casefold(), f)
        _FOLDED[descriptor.full_name] = names
    return names
