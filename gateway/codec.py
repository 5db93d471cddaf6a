"""Proto3 JSON in and out via json_format; any parse failure is a clean 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import Message

from gateway import violations
from gateway.errors import bad_request
from gateway.profiles import Profile, fold_keys

_MAX_DEPTH = 64


class Codec:
    """Proto3 JSON for one API: Any types resolve against the API's own descriptor pool."""

    def __init__(self, pool: DescriptorPool, *, emit_unpopulated: bool = True):
        self.pool = pool
        self.emit_unpopulated = emit_unpopulated

    def load_json(self, raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except RecursionError:
            raise bad_request("request body is nested too deeply") from None
        except UnicodeDecodeError as exc:
            raise bad_request(f"malformed JSON body: not UTF-8 text "
                              f"(byte {exc.object[exc.start]:#04x} at {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise bad_request(
                f"malformed JSON body at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        except ValueError:
            raise bad_request("malformed JSON body") from None

    def merge(self, value: Any, message: Message, what: str = "body", *,
              profile: Profile | None = None) -> None:
        """Merge a decoded JSON value into `message`; both lowerCamelCase and proto names are accepted.

        A binding's profile may match keys whatever their case and drop unknown ones (Go's decoding).
        """
        if value is None:
            return
        if not isinstance(value, dict):
            raise bad_request(f"{what} must be a JSON object for {message.DESCRIPTOR.full_name}")
        lenient = False
        if profile is not None:
            lenient = profile.ignore_unknown_fields
            if profile.case_insensitive_keys:
                value = fold_keys(value, message.DESCRIPTOR)
        try:
            json_format.ParseDict(value, message, ignore_unknown_fields=lenient, descriptor_pool=self.pool,
                                  max_recursion_depth=_MAX_DEPTH)
        except RecursionError:
            raise bad_request(f"invalid {what}: nested too deeply") from None
        # json_format raises ParseError, TypeError, AttributeError... in its own words; all of it is the
        # client's mistake, so a 400 whose violations name the field and what it takes.
        except Exception:  # noqa: BLE001
            raise violations.refusal(value, message.DESCRIPTOR, what, lenient=lenient) from None

    def merge_field(self, value: Any, message: Message, field: FieldDescriptor, *,
                    profile: Profile | None = None) -> None:
        """body: "field" — the JSON value is that one field of the request."""
        if value is None:
            return
        self.merge({field.json_name: value}, message, what=f"body for field {field.name}", profile=profile)

    def to_dict(self, message: Message, profile: Profile | None = None) -> Any:
        if profile is None:
            return json_format.MessageToDict(
                message,
                always_print_fields_with_no_presence=self.emit_unpopulated,
                descriptor_pool=self.pool,
            )
        return json_format.MessageToDict(
            message,
            always_print_fields_with_no_presence=not profile.omit_empty,
            use_integers_for_enums=profile.integer_enums,
            descriptor_pool=self.pool,
        )

    def dumps(self, message: Message) -> bytes:
        return dump_json(self.to_dict(message))


def dump_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def field_json_value(message: Message, field: FieldDescriptor, codec: Codec,
                     profile: Profile | None = None) -> Any:
    """One field of a message as proto3 JSON (response_body), well-known types included.

    A repeated field is a bare JSON array (an empty one when it has no element).
    """
    holder = type(message)()
    if field.is_repeated:
        getattr(holder, field.name).MergeFrom(getattr(message, field.name))
    elif field.message_type is not None:
        getattr(holder, field.name).CopyFrom(getattr(message, field.name))
    else:
        setattr(holder, field.name, getattr(message, field.name))
    if profile is None:
        out = json_format.MessageToDict(holder, always_print_fields_with_no_presence=True,
                                        descriptor_pool=codec.pool)
    else:
        out = codec.to_dict(holder, profile)
    value = out.get(field.json_name)
    if value is None and field.is_repeated:
        return {} if field.message_type is not None and field.message_type.GetOptions().map_entry else []
    return value


def payload(message: Message, response_body: FieldDescriptor | None, codec: Codec,
            profile: Profile | None) -> Any:
    """What a response or stream frame carries as JSON: the message, or its response_body field."""
    if response_body is not None:
        return field_json_value(message, response_body, codec, profile)
    return codec.to_dict(message, profile)
