"""The identity gRPC servicer: sign-up, login/logout with server-side sessions, WhoAmI, CheckSession, CSRF."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone

from agora.identity.v1 import identity_pb2 as pb
from agora.identity.v1 import identity_pb2_grpc

from services.identity import domain, events, wire
from services.identity.domain import IdentityRules, LoginThrottle, Passwords
from services.identity.store import IdentityStore, open_store
from services.kit import auth
from services.kit.auth import Caller, require_user
from services.kit.bus.outbox import OutboxRelay, outbox_relay
from services.kit.errors import InvalidArgument, NotFound, Unauthenticated
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.wire import duration, timestamp

# The session cookie the bridge reads (gateway/auth.py SESSION_COOKIE), HttpOnly. The CSRF cookie
# is the bridge's own; it passes the token it minted for it as this metadata (gateway/auth.py).
SESSION_COOKIE = "agora_session"
CSRF_METADATA = "agora-csrf-token"
WRONG_CREDENTIALS = "unknown user or wrong password"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _cookie(name: str, value: str, max_age: int, *, http_only: bool) -> tuple[str, str]:
    flags = "; HttpOnly" if http_only else ""
    return ("set-cookie", f"{name}={value}{flags}; SameSite=Lax; Path=/; Max-Age={max_age}")


def client_address(context) -> str:
    """The caller's address: the one the bridge vouched for (kit.auth.vouched_address, signed with
    the service credential), else the gRPC peer without its port. A bare x-forwarded-for is
    ignored: any direct caller could write one and spend someone else's sign-up budget, or dodge
    its own."""
    vouched = auth.vouched_address(context)
    if vouched:
        return vouched
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return rest.rsplit(":", 1)[0] if kind == "ipv4" else peer


class LocalSessions:
    """Identity resolves tokens from its own store, so its Logout is seen at once.

    A token that does not resolve becomes a caller with no user id instead of failing the call:
    Login, SignUp and GetCsrfToken must work for a browser still holding an expired cookie; the
    methods that need a session (WhoAmI, Logout) refuse that caller themselves."""

    def __init__(self, store: IdentityStore) -> None:
        self.store = store

    async def resolve(self, token: str) -> Caller | None:
        digest = domain.token_digest(token)
        session = await self.store.find_session(digest, _now())
        if session is None:
            return Caller("", "", digest)
        return Caller(session.user.id, session.user.user_name, digest)


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, store: IdentityStore, rules: IdentityRules, passwords: Passwords,
                 relay: OutboxRelay | None = None) -> None:
        self.store = store
        self.rules = rules
        self.passwords = passwords
        self.throttle = LoginThrottle(rules)
        self.relay = relay

    async def SignUp(self, request: pb.SignUpRequest, context) -> pb.SignUpResponse:
        new = domain.validate_sign_up(request.user_name, request.email, request.password, request.bio)
        self.throttle.check_sign_up(client_address(context))
        password_hash = await asyncio.to_thread(self.passwords.hash, request.password)
        user_id, now = str(uuid.uuid4()), _now()
        user = await self.store.create_user(user_id, new, password_hash, now,
                                            [events.user_registered(user_id, new, now)])
        if self.relay is not None:
            self.relay.wake()
        return pb.SignUpResponse(user_id=user.id, user=wire.user(user, with_email=True))

    async def Login(self, request: pb.LoginRequest, context) -> pb.LoginResponse:
        return await self._login(request.email, request.user_name, request.password, context)

    async def _login(self, email: str, user_name: str, password: str, context) -> pb.LoginResponse:
        """Check the password, open a session and set its cookie (Login and SeedLogin)."""
        by, key = domain.validate_login(email, user_name, password)
        account = f"{by}:{key}"
        self.throttle.check_login(account, client_address(context))
        found = await self.store.find_login(by, key)
        if found is None:
            # Spend the same argon2 work as a real check: an unknown user must not answer faster.
            await asyncio.to_thread(self.passwords.verify_nobody, password)
            self.throttle.failed(account)
            raise Unauthenticated(WRONG_CREDENTIALS)
        user, password_hash = found
        if not await asyncio.to_thread(self.passwords.verify, password_hash, password):
            self.throttle.failed(account)
            raise Unauthenticated(WRONG_CREDENTIALS)
        token, now = domain.new_token(), _now()
        expires_at = now + self.rules.session_ttl
        await self.store.create_session(domain.token_digest(token), user.id, now, expires_at)
        max_age = int(self.rules.session_ttl.total_seconds())
        # A new session id at every login (no fixation). The CSRF cookie is the bridge's and
        # survives login and logout, as gorilla/csrf's does.
        await context.send_initial_metadata((_cookie(SESSION_COOKIE, token, max_age, http_only=True),))
        return pb.LoginResponse(session_token=token, expires_at=timestamp(expires_at),
                                user=wire.user(user, with_email=True))

    async def Logout(self, request: pb.LogoutRequest, context) -> pb.LogoutResponse:
        me = require_user()
        now = _now()
        # Written with the revocation, so never lost (events.session_revoked says who acts on it).
        revoked = [events.session_revoked(me.user_id, "" if request.all_sessions else me.token_hash,
                                          request.all_sessions, now)]
        if request.all_sessions:
            await self.store.revoke_all_sessions(me.user_id, now, revoked)
        elif not await self.store.revoke_session(me.token_hash, now, revoked):
            raise Unauthenticated("the session is unknown, expired or already revoked")
        if self.relay is not None:
            self.relay.wake()
        await context.send_initial_metadata((_cookie(SESSION_COOKIE, "", 0, http_only=True),))
        return pb.LogoutResponse()

    async def WhoAmI(self, request: pb.WhoAmIRequest, context) -> pb.WhoAmIResponse:
        me = require_user()
        session = await self.store.find_session(me.token_hash, _now())
        if session is None:
            raise Unauthenticated("the session is unknown, expired or revoked: log in again")
        return pb.WhoAmIResponse(user=wire.user(session.user, with_email=True),
                                 session_expires_at=timestamp(session.expires_at))

    async def GetUser(self, request: pb.GetUserRequest, context) -> pb.GetUserResponse:
        try:
            user_id = str(uuid.UUID(request.user_id))
        except ValueError:
            raise InvalidArgument.field("user_id", "must be a user id (a UUID)") from None
        user = await self.store.get_user(user_id)
        if user is None:
            raise NotFound.of("user", user_id)
        me = auth.caller()
        return pb.GetUserResponse(user=wire.user(user, with_email=me is not None and me.user_id == user.id))

    async def CheckSession(self, request: pb.CheckSessionRequest, context) -> pb.CheckSessionResponse:
        if not request.session_token:
            raise InvalidArgument.field("session_token", "must not be empty")
        ttl = duration(self.rules.cache_ttl)
        session = await self.store.find_session(domain.token_digest(request.session_token), _now())
        if session is None:
            return pb.CheckSessionResponse(valid=False, cache_ttl=ttl)
        return pb.CheckSessionResponse(valid=True, user_id=session.user.id, user_name=session.user.user_name,
                                       expires_at=timestamp(session.expires_at), cache_ttl=ttl)

    async def GetCsrfToken(self, request: pb.GetCsrfTokenRequest, context) -> pb.GetCsrfTokenResponse:
        expires_at = _now() + self.rules.csrf_ttl
        return pb.GetCsrfTokenResponse(csrf_token=csrf_token(context), expires_at=timestamp(expires_at))

    # -- GoBid's own routes: the same accounts and sessions, the seed's rules and words

    async def SeedSignUp(self, request: pb.SeedSignUpRequest, context) -> pb.SeedSignUpResponse:
        domain.validate_seed_sign_up(request.user_name, request.email, request.password, request.bio)
        created = await self.SignUp(pb.SignUpRequest(user_name=request.user_name, email=request.email,
                                                     password=request.password, bio=request.bio), context)
        return pb.SeedSignUpResponse(user_id=created.user_id)

    async def SeedLogin(self, request: pb.SeedLoginRequest, context) -> pb.SeedLoginResponse:
        domain.validate_seed_login(request.email, request.password)
        await self._login(request.email, "", request.password, context)
        return pb.SeedLoginResponse(message="logged in sucessfully")  # the seed's spelling

    async def SeedLogout(self, request: pb.SeedLogoutRequest, context) -> pb.SeedLogoutResponse:
        await self.Logout(pb.LogoutRequest(), context)
        return pb.SeedLogoutResponse(message="logged out sucessfully")

    async def GetSeedCsrfToken(self, request: pb.GetSeedCsrfTokenRequest,
                               context) -> pb.GetSeedCsrfTokenResponse:
        return pb.GetSeedCsrfTokenResponse(csrf_token=csrf_token(context))


def csrf_token(context) -> str:
    """The token the bridge minted for the caller's signed CSRF cookie (`agora-csrf-token` metadata).

    A gRPC caller has no cookie and needs no token (bearer tokens are not sent by browsers on their
    own); it gets a random one, which no bridge will accept.
    """
    for key, value in context.invocation_metadata() or ():
        if key == CSRF_METADATA:
            return value if isinstance(value, str) else value.decode()
    return domain.new_token()


async def build(runtime, *, store: IdentityStore | None = None,
                rules: IdentityRules | None = None) -> ServiceSpec:
    rules = rules or IdentityRules()
    store = store or open_store(runtime.settings)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store)
    passwords = await asyncio.to_thread(Passwords, rules)
    servicer = IdentityServicer(store, rules, passwords, relay)
    return ServiceSpec(
        domain=DOMAINS["identity"],
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store], relay=relay, bus=bus,
        sessions=LocalSessions(store),
    )
