"""Compile and match google.api.http path templates: {field}, {field.sub}, {f=a/*/b/**}, *, **, :verb."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LITERAL = re.compile(r"[^/{}*:=]+$")

# Segment kinds.
LITERAL, WILD, DEEP = "lit", "*", "**"


class TemplateError(ValueError):
    """A template that does not follow the google.api.http grammar."""


@dataclass(frozen=True)
class Variable:
    field_path: str  # dotted proto field names, e.g. "book.name"
    start: int  # index of the first segment the variable covers
    end: int  # one past the last covered segment; -1 when it ends in "**"

    @property
    def param_name(self) -> str:
        """The OpenAPI parameter name: tools template paths with str.format, so no dots."""
        return self.field_path.replace(".", "_")

    @property
    def multi_segment(self) -> bool:
        return self.end == -1 or self.end - self.start > 1


@dataclass(frozen=True)
class Template:
    source: str
    segments: tuple[tuple[str, str], ...]  # (kind, literal text)
    variables: tuple[Variable, ...]
    verb: str

    @property
    def has_deep(self) -> bool:
        return bool(self.segments) and self.segments[-1][0] == DEEP

    @property
    def literal_path(self) -> str | None:
        """The exact path when the template has no wildcards, for O(1) lookup."""
        if any(kind != LITERAL for kind, _ in self.segments):
            return None
        path = "/" + "/".join(text for _, text in self.segments)
        return path + (":" + self.verb if self.verb else "")

    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key: literal-rich, fixed-length templates are tried before greedy ones, and a
        template with a `:verb` before the same shape without one (else `/orders/{id}` would
        take `/orders/7:watch` as the id `7:watch`)."""
        literals = sum(1 for kind, _ in self.segments if kind == LITERAL)
        return (1 if self.has_deep else 0, 0 if self.verb else 1, -literals, -len(self.segments))

    def match(self, path: str) -> dict[str, str] | None:
        """Match a raw (still percent-encoded) path; return variable values keyed by field path."""
        if not path.startswith("/"):
            return None
        if self.verb:
            suffix = ":" + self.verb
            if not path.endswith(suffix):
                return None
            path = path[: -len(suffix)]
        parts = path[1:].split("/") if path != "/" else []
        segs = self.segments
        n = len(segs)
        if self.has_deep:
            if len(parts) < n - 1:
                return None
        elif len(parts) != n:
            return None
        for i, (kind, text) in enumerate(segs):
            if kind == DEEP:
                break
            part = parts[i]
            if kind == LITERAL:
                if part != text:
                    return None
            elif not part:
                return None
        values: dict[str, str] = {}
        for var in self.variables:
            end = len(parts) if var.end == -1 else var.end
            if var.multi_segment:
                # Reserved expansion: "/" inside a segment stays encoded, everything else decodes.
                values[var.field_path] = "/".join(
                    unquote(p.replace("%2F", "%252F").replace("%2f", "%252f")) for p in parts[var.start : end]
                )
            else:
                values[var.field_path] = unquote(parts[var.start])
        return values

    def openapi_path(self) -> str:
        """The template as an OpenAPI path: one `{field}` per variable, whatever it spans."""
        out: list[str] = []
        i = 0
        by_start = {v.start: v for v in self.variables}
        while i < len(self.segments):
            var = by_start.get(i)
            if var is not None:
                out.append("{" + var.param_name + "}")
                i = len(self.segments) if var.end == -1 else var.end
                continue
            kind, text = self.segments[i]
            out.append(text if kind == LITERAL else kind)
            i += 1
        return "/" + "/".join(out) + (":" + self.verb if self.verb else "")

    def variable_pattern(self, var: Variable) -> str | None:
        """A regex for a multi-segment variable's value, e.g. ^shelves/[^/]+/books/[^/]+$."""
        if not var.multi_segment:
            return None
        end = len(self.segments) if var.end == -1 else var.end
        pieces = []
        for kind, text in self.segments[var.start : end]:
            pieces.append(re.escape(text) if kind == LITERAL else "[^/]+" if kind == WILD else ".*")
        return "^" + "/".join(pieces) + "$"


def compile_template(source: str) -> Template:
    if not source.startswith("/"):
        raise TemplateError(f"template {source!r} must start with '/'")
    body, verb = _split_verb(source[1:])
    segments: list[tuple[str, str]] = []
    variables: list[Variable] = []
    fields_seen: set[str] = set()
    tokens = _tokens(body, source)
    for i, token in enumerate(tokens):
        if token == "" and i == len(tokens) - 1 and i > 0:
            segments.append((LITERAL, ""))  # a trailing slash, as in the seed's POST /api/v1/products/
            continue
        if token.startswith("{"):
            inner = token[1:-1]
            name, eq, sub = inner.partition("=")
            if not _IDENT.match(name):
                raise TemplateError(f"bad field path {name!r} in {source!r}")
            if name in fields_seen:
                raise TemplateError(f"field {name!r} bound twice in {source!r}")
            fields_seen.add(name)
            start = len(segments)
            for part in (sub.split("/") if eq else ["*"]):
                segments.append(_segment(part, source))
            end = -1 if segments[-1][0] == DEEP else len(segments)
            variables.append(Variable(name, start, end))
        else:
            segments.append(_segment(token, source))
    for i, (kind, _) in enumerate(segments):
        if kind == DEEP and i != len(segments) - 1:
            raise TemplateError(f"'**' must be the last segment in {source!r}")
    return Template(source, tuple(segments), tuple(variables), verb)


def _split_verb(body: str) -> tuple[str, str]:
    # The verb is a ':' after the last '/' and outside braces.
    depth = 0
    colon = -1
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "/" and depth == 0:
            colon = -1
        elif ch == ":" and depth == 0:
            colon = i
    if colon == -1:
        return body, ""
    verb = body[colon + 1 :]
    if not _LITERAL.match(verb):
        raise TemplateError(f"bad verb {verb!r}")
    return body[:colon], verb


def _tokens(body: str, source: str) -> list[str]:
    """Split on '/' outside braces, so {name=a/*} stays one token."""
    tokens: list[str] = []
    depth = 0
    current = ""
    for ch in body:
        if ch == "{":
            if depth:
                raise TemplateError(f"nested braces in {source!r}")
            depth = 1
        elif ch == "}":
            if not depth:
                raise TemplateError(f"unbalanced '}}' in {source!r}")
            depth = 0
        if ch == "/" and not depth:
            tokens.append(current)
            current = ""
        else:
            current += ch
    if depth:
        raise TemplateError(f"unbalanced '{{' in {source!r}")
    tokens.append(current)
    if tokens == [""]:
        return []
    return tokens


def _segment(part: str, source: str) -> tuple[str, str]:
    if part == "*":
        return (WILD, "*")
    if part == "**":
        return (DEEP, "**")
    if not part or not _LITERAL.match(part):
        raise TemplateError(f"bad segment {part!r} in {source!r}")
    return (LITERAL, part)
