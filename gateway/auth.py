"""HTTP headers <-> gRPC metadata: Authorization, the session cookie with its CSRF check, Grpc-Metadata-*."""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie

from google.rpc import code_pb2

from gateway.errors import BridgeError

SESSION_COOKIE = "agora_session"
CSRF_COOKIE = "agora_csrf"
CSRF_HEADER = "x-csrf-token"
METADATA_PREFIX = "grpc-metadata-"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_KEY = re.compile(r"^[0-9a-z_.\-]+$")
# Keys gRPC or HTTP/2 own, and the ones the bridge itself vouches for (the caller's address,
# its credentials): a client must not smuggle them in through Grpc-Metadata-*.
_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "connection", "content-length",
                       "x-forwarded-for", "authorization"})


def _printable(value: str) -> bool:
    return all(" " <= ch <= "~" for ch in value)


def cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:  # a malformed cookie header simply carries no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


def outbound_metadata(
    method: str, headers: Iterable[tuple[bytes, bytes]], *, websocket: bool = False
) -> list[tuple[str, str | bytes]]:
    """Metadata for the upstream call; raises 403 when a cookie session's unsafe request lacks CSRF proof."""
    metadata: list[tuple[str, str | bytes]] = []
    authorization = None
    cookie_header = None
    csrf_header = None
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1").lower()
        if key == "authorization":
            authorization = raw_value.decode("latin-1")
        elif key == "cookie":
            cookie_header = raw_value.decode("latin-1") if cookie_header is None else (
                cookie_header + "; " + raw_value.decode("latin-1")
            )
        elif key == CSRF_HEADER:
            csrf_header = raw_value.decode("latin-1")
        elif key == "x-api-key":  # the service API key seed clients of the internal /api routes send
            value = raw_value.decode("latin-1")
            if not _printable(value):
                raise _bad("X-Api-Key header must be printable ASCII")
            metadata.append(("x-api-key", value))
        elif key.startswith(METADATA_PREFIX):
            name = key[len(METADATA_PREFIX):]
            value = raw_value.decode("latin-1")
            if not name or not _KEY.match(name) or name.startswith("grpc-") or name in _RESERVED:
                raise _bad(f"header {key!r} is not a valid gRPC metadata key")
            if name.endswith("-bin"):
                try:
                    metadata.append((name, base64.b64decode(value + "=" * (-len(value) % 4))))
                except ValueError:
                    raise _bad(f"header {key!r} must be base64") from None
                continue
            if not _printable(value):
                raise _bad(f"header {key!r} must be printable ASCII")
            metadata.append((name, value))
    if authorization is not None:
        if not _printable(authorization):
            raise _bad("Authorization header must be printable ASCII")
        metadata.append(("authorization", authorization))
        return metadata
    if cookie_header:
        jar = cookies(cookie_header)
        token = jar.get(SESSION_COOKIE)
        if token:
            # Double-submit: a cross-site form can send the cookie but cannot read it into a header.
            # A WebSocket upgrade is a GET; the Origin check in app.py guards it instead.
            if method not in SAFE_METHODS and not websocket:
                expected = jar.get(CSRF_COOKIE, "")
                if not expected or not csrf_header or not hmac.compare_digest(expected, csrf_header):
                    raise BridgeError(code_pb2.PERMISSION_DENIED, "CSRF token missing or wrong")
            if not _printable(token):
                raise _bad("session cookie must be printable ASCII")
            metadata.append(("authorization", f"Bearer {token}"))
    return metadata


def response_headers(
    initial: Iterable[tuple[str, str | bytes]] | None, trailing: Iterable[tuple[str, str | bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """Upstream metadata as HTTP headers; a `set-cookie` entry becomes a real Set-Cookie."""
    out: list[tuple[bytes, bytes]] = []
    for prefix, metadata in ((b"grpc-metadata-", initial), (b"grpc-trailer-", trailing)):
        if not metadata:
            continue
        for key, value in metadata:
            if key.startswith("grpc-") or key in ("content-type",):
                continue
            raw = base64.b64encode(value) if isinstance(value, bytes) else value.encode("latin-1", "replace")
            if key == "set-cookie" and prefix == b"grpc-metadata-":
                out.append((b"set-cookie", raw))
            else:
                out.append((prefix + key.encode(), raw))
    return out


def _bad(message: str) -> BridgeError:
    return BridgeError(code_pb2.INVALID_ARGUMENT, message)
