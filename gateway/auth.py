"""HTTP headers <-> gRPC metadata: Authorization, the session cookie with its CSRF check, Grpc-Metadata-*."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie

from google.rpc import code_pb2

from gateway.errors import BridgeError
from services.kit.auth import EDGE_ADDRESS

SESSION_COOKIE = "agora_session"
CSRF_COOKIE = "agora_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_METADATA = "agora-csrf-token"  # the fresh token the bridge hands a method that issues tokens
CSRF_MAX_AGE = 12 * 3600  # seconds, gorilla/csrf's default
METADATA_PREFIX = "grpc-metadata-"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

_KEY = re.compile(r"^[0-9a-z_.\-]+$")
# Keys gRPC or HTTP/2 own, and the ones the bridge itself vouches for (the caller's address,
# its credentials): a client must not smuggle them in through Grpc-Metadata-*.
_RESERVED = frozenset({"content-type", "te", "user-agent", "host", "connection", "content-length",
                       "x-forwarded-for", "authorization", EDGE_ADDRESS})


def _printable(value: str) -> bool:
    return all(" " <= ch <= "~" for ch in value)


def cookies(header: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:  # a malformed cookie header simply carries no cookies
        return {}
    return {k: m.value for k, m in jar.items()}


class CsrfGuard:
    """CSRF tokens bound to a signed cookie of their own, as gorilla/csrf does.

    The cookie holds a random 32-byte secret and the server's HMAC of it, so a cookie a third party
    plants does not verify. The token a page sends is that secret masked with a fresh one-time pad
    (pad || pad XOR secret, base64), so every token handed out differs while all of them stay valid
    for as long as the cookie does: through sign-up, login and logout, which never touch it.
    """

    def __init__(self, key: bytes | None = None):
        self.key = key or os.urandom(32)

    def _sign(self, secret: bytes) -> bytes:
        return hmac.new(self.key, b"agora-csrf|" + secret, hashlib.sha256).digest()

    def mint(self) -> tuple[bytes, str]:
        """(secret, cookie value) for a caller who has no valid cookie."""
        secret = os.urandom(32)
        value = base64.urlsafe_b64encode(secret + self._sign(secret)).decode().rstrip("=")
        return secret, value

    def verify(self, cookie: str | None) -> bytes | None:
        """The secret of a cookie this server signed, else None."""
        if not cookie:
            return None
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
        except ValueError:
            return None
        if len(raw) != 64:
            return None
        secret, mac = raw[:32], raw[32:]
        return secret if hmac.compare_digest(mac, self._sign(secret)) else None

    @staticmethod
    def token(secret: bytes) -> str:
        pad = os.urandom(len(secret))
        return base64.b64encode(pad + bytes(a ^ b for a, b in zip(pad, secret))).decode()

    @staticmethod
    def matches(token: str | None, secret: bytes | None) -> bool:
        if not token or secret is None:
            return False
        try:
            raw = base64.b64decode(token, validate=True)
        except ValueError:
            return False
        if len(raw) != 2 * len(secret):
            return False
        pad, masked = raw[: len(secret)], raw[len(secret):]
        return hmac.compare_digest(bytes(a ^ b for a, b in zip(pad, masked)), secret)

    def cookie_header(self, value: str, *, secure: bool) -> str:
        flags = "; Secure" if secure else ""
        return f"{CSRF_COOKIE}={value}; Path=/; Max-Age={CSRF_MAX_AGE}; HttpOnly; SameSite=Lax{flags}"


def cookie_value(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    parts = [v.decode("latin-1") for k, v in headers if k.lower() == b"cookie"]
    return cookies("; ".join(parts)).get(name) if parts else None


def outbound_metadata(
    method: str, headers: Iterable[tuple[bytes, bytes]], *, websocket: bool = False,
    csrf: CsrfGuard | None = None
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
            # A WebSocket upgrade is a GET; the Origin check in websockets.py guards it instead.
            if method not in SAFE_METHODS and not websocket:
                secret = csrf.verify(jar.get(CSRF_COOKIE)) if csrf is not None else None
                if not CsrfGuard.matches(csrf_header, secret):
                    raise BridgeError(
                        code_pb2.PERMISSION_DENIED,
                        "CSRF token missing or wrong: "
                        "GET /v1/auth/csrftoken and send its token as X-CSRF-Token")
            if not _printable(token):
                raise _bad("session cookie must be printable ASCII")
            metadata.append(("authorization", f"Bearer {token}"))
    return metadata


def response_headers(
    initial: Iterable[tuple[str, str | bytes]] | None,
    trailing: Iterable[tuple[str, str | bytes]] | None = None
) -> list[tuple[bytes, bytes]]:
    """Upstream metadata as HTTP headers; a `set-cookie` entry becomes a real Set-Cookie."""
    out: list[tuple[bytes, bytes]] = []
    for prefix, metadata in ((b"grpc-metadata-", initial), (b"grpc-trailer-", trailing)):
        if not metadata:
            continue
        for key, value in metadata:
            if key.startswith("grpc-") or key in ("content-type", "x-http-code"):
                continue
            raw = base64.b64encode(value) if isinstance(value, bytes) else value.encode("latin-1", "replace")
            if key == "set-cookie" and prefix == b"grpc-metadata-":
                out.append((b"set-cookie", raw))
            else:
                out.append((prefix + key.encode(), raw))
    return out


def _bad(message: str) -> BridgeError:
    return BridgeError(code_pb2.INVALID_ARGUMENT, message)
