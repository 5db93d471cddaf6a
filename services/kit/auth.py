"""Who is calling: the `authorization` metadata resolved to a Caller once per call, by the kit.

The bridge turns `Authorization: Bearer <token>` and the session cookie into that metadata;
gRPC clients send it themselves. A `SessionResolver` (identity's CheckSession, cached briefly)
turns the token into a Caller. Handlers ask `caller()` (may be None) or `require_caller()`.
"""

from __future__ import annotations

import base64
import contextvars
import hmac
import time
from dataclasses import dataclass
from typing import Protocol

from services.kit.errors import PermissionDenied, Unauthenticated


@dataclass(frozen=True)
class Caller:
    user_id: str
    username: str
    token_hash: str = ""  # the session's non-secret handle: session_digest(token), never the token itself


_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)
# True when the call carried a token that did not resolve (expired, revoked, forged).
_rejected: contextvars.ContextVar[bool] = contextvars.ContextVar("rejected_token", default=False)
# The serving process's AGORA_SERVICE_API_KEY ('' = none), set per call by the kit's interceptor.
_service_key: contextvars.ContextVar[str] = contextvars.ContextVar("service_api_key", default="")


def session_digest(token: str) -> str:
    """SHA-256 (hex) of a session token: what identity stores, and names a session in its events."""
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


def caller() -> Caller | None:
    """The signed-in caller of the current RPC, or None for an anonymous call."""
    return _caller.get()


def require_caller() -> Caller:
    found = _caller.get()
    if found is None:
        if _rejected.get():
            raise Unauthenticated("the session is unknown, expired or revoked: sign in again")
        raise Unauthenticated("this call needs a signed-in user: "
                              "send `authorization: Bearer <session token>`")
    return found


def bearer_token(metadata) -> str:
    """The session token from `authorization: Bearer <token>` metadata ('' when absent)."""
    for key, value in metadata or ():
        if key == "authorization":
            value = value if isinstance(value, str) else value.decode()
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def signed_in_caller() -> Caller | None:
    """The caller, if the call carried a live session (a lenient resolver's dead-token caller, with
    no user id, is not one)."""
    found = _caller.get()
    return found if found is not None and found.user_id else None


def is_internal(context) -> bool:
    """True when the call sent this server's service credential as `x-api-key`. A server with no
    credential configured has no internal callers: absent credentials are anonymous, never internal."""
    return bool(_service_key.get()) and _sent_service_key(context)


def owner_or_internal(context) -> Caller | None:
    """Who may touch per-user data (orders, payments, notifications, products): the signed-in caller
    (the domain then lets them see only their own), or None for an internal caller (the service
    credential as `x-api-key`). Anyone else is refused: an anonymous caller is never internal."""
    who = signed_in_caller()
    if who is not None:
        return who
    if _rejected.get():  # a dead session is refused as such, key or not
        raise Unauthenticated(_sign_in_message())
    if is_internal(context):
        return None
    raise Unauthenticated(_sign_in_message())


def internal_only(context) -> None:
    """For calls only other services of the mesh make (stock reservations): the service credential
    as `x-api-key`, whatever the caller's session."""
    if not is_internal(context):
        raise PermissionDenied("this is a service-to-service method: "
                               "only the mesh's own services may call it")


def require_user() -> Caller:
    """A signed-in caller with a live session, or UNAUTHENTICATED saying what to do."""
    who = signed_in_caller()
    if who is None:
        raise Unauthenticated(_sign_in_message())
    return who


def _sign_in_message() -> str:
    if _rejected.get() or (_caller.get() is not None and not _caller.get().user_id):
        return "the session is unknown, expired or revoked: sign in again"
    return "this call needs a signed-in user: sign in and send `authorization: Bearer <session token>`"


def use_service_key(key: str) -> contextvars.Token | None:
    """For the current call: the service credential the server was configured with (Settings
    .service_api_key; '' = none, so nobody is internal). The kit's interceptor sets it per call;
    undo with `reset`."""
    return _service_key.set(key) if key else None


# The caller's address as the bridge vouches for it: "<address> <signature>", the signature an HMAC of
# the address under the service credential. A bare x-forwarded-for is anyone's to write, so a
# server that limits by address (identity's sign-up and login budgets) trusts only this.
EDGE_ADDRESS = "agora-edge-address"


def edge_signature(key: str, address: str) -> str:
    digest = hmac.new(key.encode(), address.encode(), "sha256").digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()


def edge_address(key: str, address: str) -> str:
    """The EDGE_ADDRESS value the bridge sends for `address`."""
    return f"{address} {edge_signature(key, address)}"


def vouched_address(context) -> str | None:
    """The address the bridge vouched for on this call, or None (none sent, a signature that is not
    under this server's credential, or no credential configured)."""
    key = _service_key.get()
    if not key or context is None:
        return None
    for k, v in context.invocation_metadata() or ():
        if k == EDGE_ADDRESS:
            address, _, signature = (v if isinstance(v, str) else v.decode()).rpartition(" ")
            if address and hmac.compare_digest(signature, edge_signature(key, address)):
                return address
    return None


def _sent_service_key(context) -> bool:
    expected = _service_key.get()
    given = next((v for k, v in (context.invocation_metadata() or ()) if k == "x-api-key"),
                 "") if context else ""
    given = given if isinstance(given, str) else given.decode()
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


class SessionResolver(Protocol):
    async def resolve(self, token: str) -> Caller | None:
        """The session's caller, or None when the token is unknown, expired or revoked."""


class CachedSessions:
    """Remembers answers for `ttl` seconds so a stream of calls costs one check, not one each.

    Revocation is honoured at once where the process handles identity's `identity.session.revoked`
    event (`forget_session`, services/kit/revocation.py), and within `ttl` in any case."""

    def __init__(self, resolver: SessionResolver, *, ttl: float = 2.0, max_entries: int = 10_000) -> None:
        self.resolver = resolver
        self.ttl = ttl
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._revocations = 0  # bumped by forget_session: an answer fetched across one is not kept

    async def resolve(self, token: str) -> Caller | None:
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit and hit[0] > now:
            return hit[1]
        seen = self._revocations
        found = await self.resolver.resolve(token)
        if seen != self._revocations:
            return found  # a session was revoked while we asked: maybe this one; ask again next time
        if len(self._cache) >= self.max_entries:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
        self._cache[token] = (now + self.ttl, found)
        return found

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def forget_session(self, *, session_digest: str = "", user_id: str = "") -> int:
        """Drop the cached answers for one session (by token digest) or, without a digest, for every
        session of `user_id`; how many were dropped."""
        self._revocations += 1
        gone = [token for token, (_, who) in self._cache.items() if who is not None and (
            who.token_hash == session_digest if session_digest else who.user_id == user_id)]
        for token in gone:
            del self._cache[token]
        return len(gone)


async def authenticate(metadata, sessions: SessionResolver | None) -> contextvars.Token | None:
    """Set the current caller from the call's metadata.

    A token that does not resolve leaves the call anonymous (a stale cookie must not block
    Login or a public watch), but `require_caller()` then says the session is gone."""
    token = bearer_token(metadata)
    if not token or sessions is None:
        return None
    found = await sessions.resolve(token)
    if found is None:
        return _rejected.set(True)
    return _caller.set(found)


def reset(token: contextvars.Token | None) -> None:
    if token is not None:
        try:
            token.var.reset(token)
        except ValueError:
            pass  # finalised in another context (an abandoned stream): nothing to restore


def token_rejected() -> bool:
    """True when the call carried a session token that did not resolve."""
    return _rejected.get()


class IdentitySessions:
    """Resolves tokens with identity's CheckSession over the process's channel to identity."""

    def __init__(self, channel) -> None:
        from agora.identity.v1 import identity_pb2, identity_pb2_grpc

        self._request = identity_pb2.CheckSessionRequest
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)

    async def resolve(self, token: str) -> Caller | None:
        import grpc

        from services.kit.errors import Unavailable

        try:
            reply = await self._stub.CheckSession(self._request(session_token=token), timeout=2.0)
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(f"cannot check the session: identity answered {exc.code().name}") from None
        if not reply.valid:
            return None
        return Caller(reply.user_id, reply.user_name, session_digest(token))
