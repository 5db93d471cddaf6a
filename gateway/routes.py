"""Routes from google.api.http (additional_bindings, body, response_body) and the method+path table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agora.api.v1 import options_pb2
from google.api import http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2

from gateway import profiles, query
from gateway.codec import Codec
from gateway.descriptors import DescriptorSet
from gateway.errors import BridgeError
from gateway.templates import Template, compile_template

_HTTP_KINDS = ("get", "put", "post", "delete", "patch")


@dataclass(eq=False)
class Binding:
    """One HTTP method + path template bound to one RPC."""

    http_method: str
    template: Template
    method: MethodDescriptor
    request_class: type[Message]
    response_class: type[Message]
    body: str  # "", "*" or a top-level field name
    body_field: FieldDescriptor | None
    response_body: FieldDescriptor | None
    operation_id: str
    path_fields: frozenset[str] = field(default_factory=frozenset)
    query_skip: frozenset[str] = field(default_factory=frozenset)
    string_path_fields: frozenset[str] = field(default_factory=frozenset)
    profile: profiles.Profile | None = None  # the method's (agora.api.v1.http_profile) for this binding
    feed: profiles.FeedSpec | None = None  # the method's (agora.api.v1.feed): how its stream is shared

    @property
    def rpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def service(self) -> str:
        return self.method.containing_service.full_name

    @property
    def client_streaming(self) -> bool:
        return self.method.client_streaming

    @property
    def server_streaming(self) -> bool:
        return self.method.server_streaming

    def base_request(
        self, codec: Codec, path_values: dict[str, str], query_items: Iterable[tuple[str, str]], body: Any
    ) -> Message:
        """Body first, then path variables, then query parameters for what neither bound."""
        message = self.request_class()
        profile = self.profile
        lenient = profile is not None and profile.ignore_unknown_fields  # unknown query parameters too
        if self.body == "*":
            codec.merge(body, message, profile=profile)
        elif self.body_field is not None:
            codec.merge_field(body, message, self.body_field, profile=profile)
        if path_values:
            rest = path_values
            if self.string_path_fields:
                # Hot path: a top-level string variable needs no JSON round trip.
                rest = {}
                for key, value in path_values.items():
                    if key in self.string_path_fields:
                        setattr(message, key, value)
                    else:
                        rest[key] = value
            if rest:
                codec.merge(query.path_params_to_json(self.method.input_type, rest), message, "path")
        if self.body != "*":
            params = query.params_to_json(self.method.input_type, query_items, skip=self.query_skip,
                                          lenient=lenient)
            if params:
                codec.merge(params, message, "query parameters", profile=profile)
        else:
            # the body carries every field
            query.refuse_any(self.method.input_type, query_items, lenient=lenient)
        return message


class RouteTable:
    """Resolves (method, raw path) to a binding and its path variables, or 404 / 405."""

    def __init__(self, bindings: list[Binding]):
        self.bindings = bindings
        self._exact: dict[tuple[str, str], Binding] = {}
        self._by_method: dict[str, list[Binding]] = {}
        self._ordered = sorted(bindings, key=lambda b: b.template.specificity())
        for b in sorted(bindings, key=lambda b: b.template.specificity()):
            literal = b.template.literal_path
            if literal is not None:
                self._exact.setdefault((b.http_method, literal), b)
            else:
                self._by_method.setdefault(b.http_method, []).append(b)

    def _match(self, method: str, path: str) -> tuple[Binding, dict[str, str]] | None:
        hit = self._exact.get((method, path))
        if hit is not None:
            return hit, {}
        for b in self._by_method.get(method, ()):
            values = b.template.match(path)
            if values is not None:
                return b, values
        return None

    def _allowed(self, path: str) -> list[str]:
        """For a 405: the methods the OpenAPI document has for the resource `path` names — the
        best-matching template's, and those of templates of the same shape (only the variable names
        differ, so the document lists them under a sibling path) — not every method some looser
        template would take the same path with (`{id}` takes `7:close` as an id)."""
        best = next((b for b in self._ordered if b.template.match(path) is not None), None)
        if best is None:
            return []
        shape = (best.template.segments, best.template.verb)
        return sorted({b.http_method for b in self._ordered
                       if (b.template.segments, b.template.verb) == shape})

    def resolve(self, method: str, path: str) -> tuple[Binding, dict[str, str]]:
        lookup = "GET" if method == "HEAD" else method
        found = self._match(lookup, path)
        if found is None and "%2f" in path.lower():
            # Swagger UI and OpenAPI clients encode "/" inside {name=a/*} values; accept that spelling too.
            found = self._match(lookup, path.replace("%2F", "/").replace("%2f", "/"))
        if found is not None:
            return found
        allowed = self._allowed(path) or self._allowed(path.replace("%2F", "/").replace("%2f", "/"))
        if allowed:
            raise BridgeError(
                code_pb2.UNIMPLEMENTED, "Method Not Allowed", http=405, headers={"allow": ", ".join(allowed)}
            )
        raise BridgeError(code_pb2.NOT_FOUND, "Not Found")


def edge_callable(ds: DescriptorSet, method: MethodDescriptor) -> bool:
    """False for methods only the mesh's own services may call: ACCESS_INTERNAL, or no access class
    declared (which means internal). The bridge never routes them, in any configuration."""
    return ds.access.get(method.full_name, 0) not in (0, options_pb2.ACCESS_INTERNAL)


def build_bindings(ds: DescriptorSet, services: Iterable[str] | None = None) -> list[Binding]:
    wanted = set(services) if services is not None else None
    out: list[Binding] = []
    for service in ds.services:
        if wanted is not None and service.full_name not in wanted:
            continue
        for method in service.methods:
            rule = ds.http_rule(method)
            if rule is None or not edge_callable(ds, method):
                continue
            rules = [rule, *rule.additional_bindings]
            for index, r in enumerate(rules):
                suffix = f"_{index}" if index else ""
                out.append(_binding(ds, method, r, f"{service.name}_{method.name}{suffix}"))
    return out


def _binding(ds: DescriptorSet, method: MethodDescriptor, rule: http_pb2.HttpRule, op_id: str) -> Binding:
    kind = rule.WhichOneof("pattern")
    if kind == "custom":
        http_method, path = rule.custom.kind.upper(), rule.custom.path
    elif kind in _HTTP_KINDS:
        http_method, path = kind.upper(), getattr(rule, kind)
    else:
        raise ValueError(f"{method.full_name}: google.api.http has no pattern")
    template = compile_template(path)
    request_type: Descriptor = method.input_type
    path_fields = set()
    for var in template.variables:
        fields = query.resolve(request_type, var.field_path)
        if not fields or any(f.is_repeated for f in fields):
            raise ValueError(f"{method.full_name}: path variable {var.field_path!r} is not a singular field")
        path_fields.add(".".join(f.name for f in fields))
    body_field = None
    if rule.body and rule.body != "*":
        body_field = request_type.fields_by_name.get(rule.body)
        if body_field is None:
            raise ValueError(f"{method.full_name}: body field {rule.body!r} does not exist")
    response_body = None
    if rule.response_body:
        response_body = method.output_type.fields_by_name.get(rule.response_body)
        if response_body is None:
            raise ValueError(f"{method.full_name}: response_body {rule.response_body!r} does not exist")
    skip = set(path_fields)
    if body_field is not None:
        skip.add(body_field.name)
    return Binding(
        http_method=http_method,
        template=template,
        method=method,
        request_class=ds.message_class(request_type),
        response_class=ds.message_class(method.output_type),
        body=rule.body,
        body_field=body_field,
        response_body=response_body,
        operation_id=op_id,
        path_fields=frozenset(path_fields),
        query_skip=frozenset(skip),
        string_path_fields=frozenset(
            v.field_path
            for v in template.variables
            if (f := request_type.fields_by_name.get(v.field_path)) is not None and f.type == f.TYPE_STRING
        ),
        profile=profiles.for_binding(ds.profiles.get(method.full_name), http_method, path),
        feed=profiles.FeedSpec.of(method, option, ds.access.get(method.full_name, 0))
        if (option := ds.feeds.get(method.full_name)) is not None else None,
    )
