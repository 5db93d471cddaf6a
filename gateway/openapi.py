"""OpenAPI 3.1 from the descriptors: paths, parameters, bodies, message schemas with their comments."""

from __future__ import annotations

from typing import Any

from agora.api.v1 import options_pb2
from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from gateway import query
from gateway.descriptors import DescriptorSet
from gateway.routes import Binding

_F = FieldDescriptor
_INT32 = {_F.TYPE_INT32, _F.TYPE_SINT32, _F.TYPE_SFIXED32}
_UINT32 = {_F.TYPE_UINT32, _F.TYPE_FIXED32}
_INT64 = {_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64}
_UINT64 = {_F.TYPE_UINT64, _F.TYPE_FIXED64}
_QUERY_DEPTH = 3  # how deep nested a.b.c query parameters are listed for recursive messages

_ERROR_REF = {"$ref": "#/components/schemas/google.rpc.Status"}
_ERROR_SCHEMAS: dict[str, Any] = {
    "google.rpc.Status": {
        "type": "object",
        "description": "A gRPC status: `code` is the google.rpc.Code, "
                       "`details` keep google.rpc error details.",
        "properties": {
            "code": {"type": "integer", "format": "int32"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"$ref": "#/components/schemas/google.protobuf.Any"}},
        },
    },
    "google.protobuf.Any": {
        "type": "object",
        "description": "Any message, tagged with its type URL in `@type`.",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}

# Proto3 JSON forms of the well-known types.
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time",
                                  "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
                                 "example": "1.5s"},
    "google.protobuf.FieldMask": {"type": "string",
                                  "description": "Comma-separated lowerCamelCase field paths."},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.NullValue": {"type": "null"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"$ref": "#/components/schemas/google.protobuf.Any"},
}
_NUMBER_WORDS = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}


class OpenAPIBuilder:
    def __init__(self, ds: DescriptorSet, bindings: list[Binding], *, title: str, version: str):
        self.ds = ds
        self.bindings = bindings
        self.title = title
        self.version = version
        self.schemas: dict[str, Any] = dict(_ERROR_SCHEMAS)

    def build(self) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        tags: dict[str, str] = {}
        for b in self.bindings:
            service = b.method.containing_service
            tags.setdefault(service.name, self.ds.comments.get(service.full_name, ""))
            paths.setdefault(b.template.openapi_path(), {})[b.http_method.lower()] = self._operation(b)
        return {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "tags": [{"name": n, "description": d} if d else {"name": n} for n, d in sorted(tags.items())],
            "paths": paths,
            "components": {"schemas": dict(sorted(self.schemas.items()))},
        }

    # -- operations

    def _operation(self, b: Binding) -> dict[str, Any]:
        method = b.method
        comment = self.ds.comments.get(method.full_name, "")
        op: dict[str, Any] = {
            "operationId": b.operation_id,
            "tags": [method.containing_service.name],
            "summary": comment.splitlines()[0] if comment else method.name,
            "parameters": self._path_params(b) + self._query_params(b),
            "responses": self._responses(b),
        }
        if comment:
            op["description"] = comment
        if b.client_streaming:
            op["description"] = (comment + "\n\n" if comment else "") + (
                "Bidirectional stream: open a WebSocket on this path and exchange JSON text frames; "
                "path and query parameters fill the fields a frame leaves unset."
            )
        partial = "update_mask" in method.input_type.fields_by_name  # a patch names what it changes
        lenient = b.profile is not None and b.profile.ignore_unknown_fields
        if b.body == "*":
            ref = self._message_ref(method.input_type)
            path_bound = {f.json_name for f in method.input_type.fields if f.name in b.path_fields}
            reshaped = path_bound or lenient
            op["requestBody"] = self._body(self._body_schema(ref, path_bound, False, lenient)
                                           if reshaped else ref)
        elif b.body_field is not None:
            bf = b.body_field
            single = bf.message_type is not None and not bf.is_repeated
            schema = self._message_ref(bf.message_type) if single else self._field_schema(bf)
            reshaped = partial or lenient
            patch_of = bf.message_type if partial and single else None
            op["requestBody"] = self._body(self._body_schema(schema, set(), partial, lenient, patch_of)
                                           if reshaped else schema)
        return op

    def _body(self, schema: dict[str, Any]) -> dict[str, Any]:
        # A body whose message has required fields must be sent: an absent body is an empty message.
        required = bool(self._resolved(schema).get("required"))
        return {"required": required, "content": {"application/json": {"schema": schema}}}

    def _resolved(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The component a (possibly wrapped) reference names, or the schema itself."""
        if "$ref" in schema:
            return self.schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
        for part in (*schema.get("allOf", ()), *schema.get("anyOf", ())):
            if "$ref" in part or "allOf" in part:
                return self._resolved(part)
        return schema

    def _body_schema(self, schema: dict[str, Any], drop: set[str], partial: bool, lenient: bool = False,
                     patch_of: Descriptor | None = None) -> dict[str, Any]:
        """The message's schema as a body: without the fields the path binds, without `required`
        for an update (the server takes a patch of the resource, its mask says what changes), and
        open to unknown keys where the binding's profile ignores them."""
        target = self._resolved(schema)
        if not target:
            return schema
        dropped = (("properties", "required", "additionalProperties") if lenient
                   else ("properties", "required"))
        inline = {k: v for k, v in target.items() if k not in dropped}
        inline["properties"] = {k: v for k, v in target.get("properties", {}).items() if k not in drop}
        if patch_of is not None:
            # In a patch an empty REQUIRED field is "not changed" (the kit does not demand it), so
            # its presence bounds (minLength 1, not zero) go; its other bounds stay.
            for f in patch_of.fields:
                if f.json_name in inline["properties"] and _required(f):
                    inline["properties"][f.json_name] = self._field_schema(f, patch=True)
        required = [] if partial else [k for k in target.get("required", ()) if k not in drop]
        if required:
            inline["required"] = required
        return inline

    def _responses(self, b: Binding) -> dict[str, Any]:
        if b.response_body is not None:
            result = self._field_schema(b.response_body)
        else:
            result = self._message_ref(b.method.output_type)
        error = {"description": "A gRPC error status",
                 "content": {"application/json": {"schema": _ERROR_REF}}}
        if b.server_streaming and not b.client_streaming:
            ok = {
                "description": (
                    "A stream of messages: Server-Sent Events when `Accept: text/event-stream` "
                    "(`id:` carries the sequence; reconnect with `Last-Event-ID`; "
                    "a final error arrives as `event: error`), "
                    "newline-delimited JSON otherwise "
                    "(`{\"result\": ...}` lines, a final `{\"error\": ...}`), "
                    "or a WebSocket on upgrade."
                ),
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "object",
                            "properties": {"result": result, "error": _ERROR_REF},
                        }
                    },
                    "text/event-stream": {"schema": {"type": "string"}, "x-item-schema": result},
                },
            }
        elif b.client_streaming:
            ok = {"description": "Switching to WebSocket (JSON text frames)."}
            return {"101": ok, "default": error}
        else:
            ok = {"description": "OK", "content": {"application/json": {"schema": result}}}
        status = str(b.profile.success_status) if b.profile is not None else "200"
        return {status: ok, "default": error}

    def _path_params(self, b: Binding) -> list[dict[str, Any]]:
        out = []
        for var in b.template.variables:
            fields = query.resolve(b.method.input_type, var.field_path) or []
            schema = (_bounded(self._param_schema(fields[-1]), fields[-1], repeated=False) if fields
                      else {"type": "string"})
            notes = [f"Binds field `{var.field_path}`."]
            if var.multi_segment:
                # OpenAPI path parameters cannot span segments; say the shape rather than a pattern no
                # client can satisfy unencoded. The bridge also accepts the value with "/" as %2F.
                schema = {"type": "string"}
                notes.append(f"Spans segments: must match `{b.template.variable_pattern(var)}`.")
            if fields and (desc := self.ds.comments.get(fields[-1].full_name)):
                notes.insert(0, desc)
            out.append({"name": var.param_name, "in": "path", "required": True, "schema": schema,
                        "description": " ".join(notes)})
        return out

    def _query_params(self, b: Binding) -> list[dict[str, Any]]:
        if b.body == "*":
            return []
        out: list[dict[str, Any]] = []
        self._collect_query(b.method.input_type, "", b.query_skip, out, depth=0, proto_prefix="")
        if b.profile is not None and b.profile.ignore_unknown_fields:
            # Lenient decoding (the seeds' routes) ignores an enum value it does not know.
            for param in out:
                if "$ref" in param["schema"] and param["schema"]["$ref"].rsplit("/", 1)[-1] in self.schemas \
                        and "enum" in str(self.schemas[param["schema"]["$ref"].rsplit("/", 1)[-1]]):
                    param["schema"] = {"type": "string"}
        return out

    def _collect_query(self, msg: Descriptor, prefix: str, skip, out, *, depth: int,
                       proto_prefix: str) -> None:
        for f in msg.fields:
            proto_path = proto_prefix + f.name
            if proto_path in skip or any(proto_path.startswith(s + ".") for s in skip):
                continue
            name = prefix + f.json_name
            mt = f.message_type
            if mt is not None and mt.GetOptions().map_entry:
                continue  # maps go as name[key]=value, which OpenAPI cannot list
            if mt is not None and not query.is_leaf_message(mt):
                if depth < _QUERY_DEPTH and not f.is_repeated:
                    self._collect_query(mt, name + ".", skip, out, depth=depth + 1,
                                        proto_prefix=proto_path + ".")
                continue
            if mt is not None and mt.full_name in ("google.protobuf.Struct", "google.protobuf.ListValue",
                                                    "google.protobuf.Value", "google.protobuf.Any"):
                schema: dict[str, Any] = {"type": "string", "description": "JSON text"}
            else:
                schema = self._param_schema(f)
            schema = _bounded(schema, f, repeated=f.is_repeated)
            param = {"name": name, "in": "query", "required": depth == 0 and _required(f), "schema": schema}
            if f.is_repeated:
                param.update(style="form", explode=True)
            if desc := self.ds.comments.get(f.full_name):
                param["description"] = desc
            out.append(param)

    def _param_schema(self, f: FieldDescriptor) -> dict[str, Any]:
        """Schema of a single path/query value (a scalar, an enum or a one-string WKT)."""
        mt = f.message_type
        if mt is not None:
            if mt.full_name in query.WRAPPERS:
                return self._scalar_schema(mt.fields_by_name["value"])
            return dict(_WKT.get(mt.full_name, {"type": "string"}))
        return self._scalar_schema(f)

    # -- schemas

    def _field_schema(self, f: FieldDescriptor, *, patch: bool = False) -> dict[str, Any]:
        mt = f.message_type
        if mt is not None and mt.GetOptions().map_entry:
            value = mt.fields_by_name["value"]
            schema: dict[str, Any] = {
                "type": "object",  # a map's values are never null
                "additionalProperties": _bounded(self._single_schema(value), value, repeated=False),
            }
            schema = _nullable(schema)  # null clears the map
        else:
            required = _required(f) and not patch
            schema = _bounded(self._single_schema(f), f, repeated=f.is_repeated, required=required)
            if not required and _zero_allowed(f):
                schema = _nullable(schema)  # proto3 JSON reads null as the field's default
        extra: dict[str, Any] = {}
        if desc := self.ds.comments.get(f.full_name):
            extra["description"] = desc
        if field_behavior_pb2.OUTPUT_ONLY in _behaviors(f):
            extra["readOnly"] = True  # set by the server; ignored in requests (AIP-203)
        if extra:
            schema = {**schema, **extra} if "$ref" not in schema else {"allOf": [schema], **extra}
        return schema

    def _single_schema(self, f: FieldDescriptor) -> dict[str, Any]:
        mt = f.message_type
        if mt is not None:
            return self._message_ref(mt)
        return self._scalar_schema(f)

    def _scalar_schema(self, f: FieldDescriptor) -> dict[str, Any]:
        t = f.type
        if t == _F.TYPE_ENUM:
            return self._enum_ref(f.enum_type)
        if t == _F.TYPE_BOOL:
            return {"type": "boolean"}
        if t == _F.TYPE_STRING:
            return {"type": "string"}
        if t == _F.TYPE_BYTES:
            return {"type": "string", "format": "byte", "contentEncoding": "base64"}
        if t in _INT32:
            return {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
        if t in _UINT32:
            return {"type": "integer", "format": "uint32", "minimum": 0, "maximum": 2**32 - 1}
        if t in _INT64:
            # proto3 JSON writes 64-bit integers as strings; it reads numbers too.
            return {"type": "string", "format": "int64", "pattern": r"^-?[0-9]{1,18}$"}
        if t in _UINT64:
            return {"type": "string", "format": "uint64", "pattern": r"^[0-9]{1,19}$"}
        fmt = "float" if t == _F.TYPE_FLOAT else "double"
        return {"oneOf": [{"type": "number", "format": fmt}, _NUMBER_WORDS]}

    def _enum_ref(self, e: EnumDescriptor) -> dict[str, Any]:
        if e.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if e.full_name not in self.schemas:
            # The name or the number of a declared value: the services refuse a number they do not know.
            schema: dict[str, Any] = {
                "anyOf": [{"type": "string", "enum": [v.name for v in e.values]},
                          {"type": "integer", "enum": sorted({v.number for v in e.values})}]
            }
            lines = [self.ds.comments.get(e.full_name, "")]
            for v in e.values:
                if c := self.ds.comments.get(f"{e.full_name}.{v.name}"):
                    lines.append(f"- `{v.name}`: {c}")
            if text := "\n".join(line for line in lines if line):
                schema["description"] = text
            self.schemas[e.full_name] = schema
        return {"$ref": f"#/components/schemas/{e.full_name}"}

    def _message_ref(self, m: Descriptor) -> dict[str, Any]:
        name = m.full_name
        if name in _WKT and name != "google.protobuf.Any":
            return dict(_WKT[name])
        if name in query.WRAPPERS:
            inner = self._scalar_schema(m.fields_by_name["value"])
            return {"anyOf": [inner, {"type": "null"}]}
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder first: recursive messages refer to themselves
            props = {f.json_name: self._field_schema(f) for f in m.fields}
            # Unknown keys are refused (json_format); the proto field names are accepted too, as aliases.
            schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
            # Required: declared so, or a number whose zero (what absence means) breaks its bounds.
            if required := [f.json_name for f in m.fields if _required(f) or not _zero_allowed(f)]:
                schema["required"] = required
            if desc := self.ds.comments.get(name):
                schema["description"] = desc
            self.schemas[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _zero_allowed(f: FieldDescriptor) -> bool:
    """Whether the field's default (what null means) keeps its number bounds."""
    r = _rules(f)
    if f.is_repeated and f.message_type is not None and f.message_type.full_name == "google.protobuf.Value":
        return False  # json_format refuses null for a list of Values
    if r is None or f.type in (_F.TYPE_STRING, _F.TYPE_BYTES) or f.message_type is not None or f.is_repeated:
        return True
    return not (r.HasField("gte") and r.gte > 0) and not (r.HasField("lte") and r.lte < 0)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if kind == "null" or schema == {}:
        return schema
    if isinstance(kind, str) and "$ref" not in schema:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _behaviors(f: FieldDescriptor) -> set[int]:
    """google.api.field_behavior of a field (AIP-203)."""
    return set(f.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _required(f: FieldDescriptor) -> bool:
    return field_behavior_pb2.REQUIRED in _behaviors(f)


def _rules(f: FieldDescriptor) -> options_pb2.FieldRules | None:
    opts = f.GetOptions()
    return opts.Extensions[options_pb2.field] if opts.HasExtension(options_pb2.field) else None


def _bounded(schema: dict[str, Any], f: FieldDescriptor, *, repeated: bool, required: bool | None = None
             ) -> dict[str, Any]:
    """The field's schema with what the kit enforces (services/kit/validation.py): REQUIRED and the
    (agora.api.v1.field) bounds. A string bound holds for a non-empty value unless the field is
    required; number bounds hold for every value (proto3 cannot tell zero from unset)."""
    r = _rules(f)
    required = _required(f) if required is None else required
    if repeated:
        array: dict[str, Any] = {"type": "array",
                                 "items": _bounded_value(schema, f, r, required=True, item=True)}
        if r is not None and r.HasField("min_items"):
            array["minItems"] = r.min_items
        elif required:
            array["minItems"] = 1
        if r is not None and r.HasField("max_items"):
            array["maxItems"] = r.max_items
        return array
    return _bounded_value(schema, f, r, required=required)


def _bounded_value(schema: dict[str, Any], f: FieldDescriptor, r: options_pb2.FieldRules | None, *,
                   required: bool, item: bool = False) -> dict[str, Any]:
    """`item`: one item of a repeated field, which every bound applies to but REQUIRED does not."""
    if "$ref" in schema or f.type == _F.TYPE_ENUM or f.message_type is not None:
        return schema
    out = dict(schema)
    if f.type in (_F.TYPE_STRING, _F.TYPE_BYTES):
        if r is not None and r.HasField("max_len"):
            out["maxLength"] = r.max_len
        if r is not None and r.HasField("min_len") and required:
            out["minLength"] = r.min_len
        elif required and not item:
            out["minLength"] = 1
        if r is not None and r.HasField("max_bytes") and f.type == _F.TYPE_BYTES:
            out["maxLength"] = 4 * ((r.max_bytes + 2) // 3)  # base64 text of that many bytes
        if r is not None and r.pattern:
            out["pattern"] = r.pattern if required else f"^$|{r.pattern}"
            if r.pattern_description:
                out["description"] = f"Must be {r.pattern_description}."
        return out
    if r is not None and out.get("type") == "integer":
        if r.HasField("gte"):
            out["minimum"] = max(int(r.gte), out.get("minimum", int(r.gte)))
        if r.HasField("lte"):
            out["maximum"] = min(int(r.lte), out.get("maximum", int(r.lte)))
    elif r is not None and out.get("format") == "int64" and r.HasField("gte") and r.gte >= 1:
        out["pattern"] = r"^[1-9][0-9]{0,17}$"
    elif r is not None and out.get("format") == "int64" and r.HasField("gte") and r.gte >= 0:
        out["pattern"] = r"^[0-9]{1,18}$"
    elif required and not item and out.get("format") == "int64":
        out["pattern"] = r"^-?[1-9][0-9]{0,17}$"  # not zero
    if required and not item and out.get("type") == "integer":
        out["not"] = {"const": 0}
    return out


def build_openapi(ds: DescriptorSet, bindings: list[Binding], *, title: str = "Agora API",
                  version: str = "v1") -> dict[str, Any]:
    return OpenAPIBuilder(ds, bindings, title=title, version=version).build()
