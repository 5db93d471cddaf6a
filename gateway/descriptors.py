"""Load a FileDescriptorSet into a private pool: message classes, HTTP rules and source comments."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gateway import profiles

# DescriptorProto field numbers used by SourceCodeInfo paths.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM = 2, 3, 4
_ENUM_VALUE, _SERVICE_METHOD = 2, 2


@dataclass
class DescriptorSet:
    """Everything the bridge knows about the API: built once at start-up, read on every request."""

    pool: descriptor_pool.DescriptorPool
    services: list[ServiceDescriptor]
    comments: dict[str, str] = field(default_factory=dict)
    http_rules: dict[str, http_pb2.HttpRule] = field(default_factory=dict)
    # (agora.api.v1.http_profile) per method full name; absent for most methods.
    profiles: dict[str, Any] = field(default_factory=dict)
    # (agora.api.v1.access) per method full name, as the Access enum's number (0: not declared)
    access: dict[str, int] = field(default_factory=dict)
    # (agora.api.v1.feed) per method full name; absent for most methods.
    feeds: dict[str, Any] = field(default_factory=dict)
    _classes: dict[str, type[Message]] = field(default_factory=dict)

    def message_class(self, descriptor: Descriptor) -> type[Message]:
        cls = self._classes.get(descriptor.full_name)
        if cls is None:
            cls = message_factory.GetMessageClass(descriptor)
            self._classes[descriptor.full_name] = cls
        return cls

    def http_rule(self, method: MethodDescriptor) -> http_pb2.HttpRule | None:
        return self.http_rules.get(method.full_name)


def load(descriptor_set: bytes) -> DescriptorSet:
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    # A private pool: the process may also hold generated stubs of the same files in the default pool.
    pool = descriptor_pool.DescriptorPool()
    for file_proto in fds.file:
        pool.Add(file_proto)
    services: list[ServiceDescriptor] = []
    comments: dict[str, str] = {}
    rules: dict[str, http_pb2.HttpRule] = {}
    declared: dict[str, Any] = {}
    access: dict[str, int] = {}
    feeds: dict[str, Any] = {}
    for file_proto in fds.file:
        comments.update(_comments(file_proto))
        prefix = f"{file_proto.package}." if file_proto.package else ""
        for service_proto in file_proto.service:
            services.append(pool.FindServiceByName(prefix + service_proto.name))
            for method_proto in service_proto.method:
                # The descriptor set's options were parsed with annotations_pb2 imported, so the
                # extension is decoded; reading it from the raw proto avoids upb-pool lookups.
                if method_proto.options.HasExtension(annotations_pb2.http):
                    rule = http_pb2.HttpRule()
                    rule.CopyFrom(method_proto.options.Extensions[annotations_pb2.http])
                    rules[f"{prefix}{service_proto.name}.{method_proto.name}"] = rule
                access[f"{prefix}{service_proto.name}.{method_proto.name}"] = \
                    profiles.method_access(method_proto.options)
                found = profiles.method_profile(method_proto.options)
                if found is not None:
                    declared[f"{prefix}{service_proto.name}.{method_proto.name}"] = found
                feed = profiles.method_feed(method_proto.options)
                if feed is not None:
                    feeds[f"{prefix}{service_proto.name}.{method_proto.name}"] = feed
    return DescriptorSet(pool=pool, services=services, comments=comments, http_rules=rules, profiles=declared,
                         access=access, feeds=feeds)


def _comments(file_proto: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    """Map full names of messages, fields, enums, values, services and methods to their leading comment."""
    names: dict[tuple[int, ...], str] = {}
    prefix = f"{file_proto.package}." if file_proto.package else ""

    def enum(path: tuple[int, ...], scope: str, proto: descriptor_pb2.EnumDescriptorProto) -> None:
        name = scope + proto.name
        names[path] = name
        for k, value in enumerate(proto.value):
            # Enum values live in the enum's parent scope in protobuf; key them under the enum for docs.
            names[path + (_ENUM_VALUE, k)] = f"{name}.{value.name}"

    def message(path: tuple[int, ...], scope: str, proto: descriptor_pb2.DescriptorProto) -> None:
        name = scope + proto.name
        names[path] = name
        for k, f in enumerate(proto.field):
            names[path + (_MSG_FIELD, k)] = f"{name}.{f.name}"
        for k, nested in enumerate(proto.nested_type):
            message(path + (_MSG_NESTED, k), name + ".", nested)
        for k, e in enumerate(proto.enum_type):
            enum(path + (_MSG_ENUM, k), name + ".", e)

    for i, m in enumerate(file_proto.message_type):
        message((_FILE_MESSAGE, i), prefix, m)
    for i, e in enumerate(file_proto.enum_type):
        enum((_FILE_ENUM, i), prefix, e)
    for i, s in enumerate(file_proto.service):
        names[(_FILE_SERVICE, i)] = prefix + s.name
        for k, m in enumerate(s.method):
            names[(_FILE_SERVICE, i, _SERVICE_METHOD, k)] = f"{prefix}{s.name}.{m.name}"

    out: dict[str, str] = {}
    for location in file_proto.source_code_info.location:
        name = names.get(tuple(location.path))
        text = location.leading_comments.strip() or location.trailing_comments.strip()
        if name and text:
            out[name] = "\n".join(line.strip() for line in text.splitlines())
    return out
