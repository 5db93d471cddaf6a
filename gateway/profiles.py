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


def method_access(options: descriptor_pb2.MethodOptions) -> int:
    """The method's (agora.api.v1.access) as the Access enum's number; 0 when not declared."""
    return options.Extensions[options_pb2.access] if options.HasExtension(options_pb2.access) else 0


def method_profile(options: descriptor_pb2.MethodOptions) -> options_pb2.HttpProfile | None:
    """The method's profile option, if it declares one."""
    if not options.HasExtension(options_pb2.http_profile):
        return None
    profile = options_pb2.HttpProfile()
    profile.CopyFrom(options.Extensions[options_pb2.http_profile])
    return profile


SHARED, PER_CALLER = options_pb2.STREAM_SHARING_SHARED, options_pb2.STREAM_SHARING_PER_CALLER
LOG, SNAPSHOT = options_pb2.FEED_KIND_LOG, options_pb2.FEED_KIND_SNAPSHOT
DEFAULT_RING = 1024
SEQUENCE_FIELD = "sequence"


@dataclass(frozen=True)
class FeedSpec:
    """A method's (agora.api.v1.feed), checked against the method when the bridge builds its routes."""

    sharing: int
    kind: int
    ring: int
    admit: str
    snapshot_field: str
    replays_history: bool

    @classmethod
    def of(cls, method, option: options_pb2.StreamFeed, access: int) -> FeedSpec | None:
        if option.sharing == options_pb2.STREAM_SHARING_UNSPECIFIED:
            return None
        name = method.full_name
        if not method.server_streaming:
            raise ValueError(f"{name}: (agora.api.v1.feed) is for server streams")
        kind = option.kind or LOG
        sequence = method.output_type.fields_by_name.get(SEQUENCE_FIELD)
        if kind == LOG and (sequence is None or sequence.message_type is not None):
            raise ValueError(f"{name}: a log feed's messages need a scalar `{SEQUENCE_FIELD}` field")
        if option.sharing == SHARED and access != options_pb2.ACCESS_PUBLIC:
            raise ValueError(f"{name}: only an ACCESS_PUBLIC stream may be shared by all callers (its "
                             "upstream call carries no credentials); use STREAM_SHARING_PER_CALLER")
        if option.snapshot_field and option.snapshot_field not in method.output_type.fields_by_name:
            raise ValueError(f"{name}: snapshot_field {option.snapshot_field!r} is not a response field")
        if option.admit:
            admit = method.containing_service.methods_by_name.get(option.admit.rsplit(".", 1)[-1])
            if admit is None or admit.full_name != option.admit or admit.server_streaming \
                    or admit.client_streaming:
                raise ValueError(f"{name}: admit {option.admit!r} is not a unary method of the service")
        if option.replays_history and option.snapshot_field:
            raise ValueError(f"{name}: a feed starts with a snapshot or replays its history, not both")
        return cls(option.sharing, kind, option.ring or DEFAULT_RING, option.admit, option.snapshot_field,
                   option.replays_history)


def method_feed(options: descriptor_pb2.MethodOptions) -> options_pb2.StreamFeed | None:
    """The method's (agora.api.v1.feed) option, if it declares one."""
    if not options.HasExtension(options_pb2.feed):
        return None
    feed = options_pb2.StreamFeed()
    feed.CopyFrom(options.Extensions[options_pb2.feed])
    return feed


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
