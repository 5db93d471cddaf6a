"""The kit resolves `authorization` metadata to a caller once per call, with a short cache."""

from __future__ import annotations

import grpc
import pytest

from services.kit.auth import CachedSessions, Caller
from services.kit.server import DomainServer
from tests.services.kit import probe_service


class Sessions:
    def __init__(self) -> None:
        self.live = {"good-token": Caller("u1", "ada")}
        self.calls = 0

    async def resolve(self, token: str) -> Caller | None:
        self.calls += 1
        return self.live.get(token)


@pytest.fixture
async def server():
    sessions = Sessions()
    spec = probe_service.spec()
    spec.sessions = CachedSessions(sessions, ttl=60)
    srv = DomainServer(spec, host="127.0.0.1", port=0, grace=0.5)
    await srv.start()
    yield srv, sessions, spec.sessions
    await srv.stop()


async def whoami(address: str, token: str | None, method: str = "WhoAmI") -> bytes:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    async with grpc.aio.insecure_channel(address) as channel:
        return await channel.unary_unary(f"/{probe_service.DOMAIN.service}/{method}")(
            b"", metadata=metadata, timeout=5)


async def test_caller_is_resolved_cached_and_revocable(server):
    srv, sessions, cached = server
    assert await whoami(srv.address, None) == b"anonymous"
    assert await whoami(srv.address, "good-token") == b"ada"
    assert await whoami(srv.address, "good-token") == b"ada"
    assert sessions.calls == 1, "a second call within the TTL is answered from the cache"
    del sessions.live["good-token"]
    cached.forget("good-token")  # what identity's Logout does for its own process
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await whoami(srv.address, "good-token", "Private")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "sign in again" in info.value.details()


async def test_a_dead_token_is_anonymous_for_public_calls_and_refused_for_private_ones(server):
    srv, _, _ = server
    assert await whoami(srv.address, "forged") == b"anonymous"  # e.g. Login with a stale cookie
    assert await whoami(srv.address, "good-token", "Private") == b"u1"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await whoami(srv.address, "forged", "Private")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired or revoked" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await whoami(srv.address, None, "Private")
    assert "needs a signed-in user" in info.value.details()


async def call(address: str, method: str, metadata=None) -> bytes:
    async with grpc.aio.insecure_channel(address) as channel:
        return await channel.unary_unary(f"/{probe_service.DOMAIN.service}/{method}")(
            b"", metadata=metadata, timeout=5)


@pytest.fixture
async def keyed_server(monkeypatch):
    """A server started with AGORA_SERVICE_API_KEY=k-123 (through Settings, as `agora up` does); the
    process environment says something else, which must not matter once the server runs."""
    from services.kit.config import Settings

    settings = Settings.from_env({"AGORA_SERVICE_API_KEY": "k-123"})
    monkeypatch.setenv("AGORA_SERVICE_API_KEY", "stale")
    spec = probe_service.spec()
    spec.sessions = CachedSessions(Sessions(), ttl=60)
    srv = DomainServer(spec, host="127.0.0.1", port=0, grace=0.5, service_api_key=settings.service_api_key)
    await srv.start()
    yield srv
    await srv.stop()


async def test_with_a_service_key_internal_calls_need_it(keyed_server):
    address = keyed_server.address
    assert await call(address, "Internal", [("x-api-key", "k-123")]) == b"internal"
    assert await call(address, "Mine", [("x-api-key", "k-123")]) == b"internal"
    # owners need no key
    assert await call(address, "Mine", [("authorization", "Bearer good-token")]) == b"u1"
    for metadata in (None, [("x-api-key", "stale")], [("x-api-key", "k-12")]):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(address, "Internal", metadata)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, metadata
        assert "service-to-service" in info.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(address, "Mine", metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        assert "sign in" in info.value.details()


async def test_without_a_service_key_nobody_is_internal(server, monkeypatch):
    """Absent credentials are anonymous, never internal: a server with no key has no internal callers."""
    srv, _, _ = server
    # the kit reads Settings, not the environment
    monkeypatch.setenv("AGORA_SERVICE_API_KEY", "set-after-start")
    for metadata in (None, [("x-api-key", "")], [("x-api-key", "set-after-start")]):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(srv.address, "Internal", metadata)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(srv.address, "Mine", metadata)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await call(srv.address, "Mine", [("authorization", "Bearer good-token")]) == b"u1"


class _Counting:
    def __init__(self, found: dict[str, Caller]) -> None:
        self.found, self.asked = found, 0

    async def resolve(self, token: str) -> Caller | None:
        self.asked += 1
        return self.found.get(token)


async def test_a_revocation_drops_the_cached_session_and_the_ttl_bounds_it_otherwise():
    import asyncio

    from services.kit.auth import session_digest

    alice = {t: Caller("u1", "alice", session_digest(t)) for t in ("a1", "a2")}
    resolver = _Counting({**alice, "b1": Caller("u2", "bob", session_digest("b1"))})
    cache = CachedSessions(resolver, ttl=0.3)
    for token in ("a1", "a2", "b1"):
        await cache.resolve(token)
    assert resolver.asked == 3
    # one session: only that token is asked again
    del resolver.found["a1"]
    assert cache.forget_session(session_digest=session_digest("a1")) == 1
    assert await cache.resolve("a1") is None and await cache.resolve("a2") is not None
    assert resolver.asked == 4
    # every session of the user
    assert cache.forget_session(user_id="u1") == 1  # a2 (a1's negative answer holds no caller)
    del resolver.found["a2"]
    assert await cache.resolve("a2") is None
    # without the event, the TTL is the bound
    del resolver.found["b1"]
    assert await cache.resolve("b1") is not None  # cached
    await asyncio.sleep(0.35)
    assert await cache.resolve("b1") is None


def test_open_streams_end_by_session_or_by_user_and_forget_ended_ones():
    from services.kit.revocation import OpenStreams

    streams, ended = OpenStreams(), []
    a1, a2, b = Caller("u1", "alice", "d1"), Caller("u1", "alice", "d2"), Caller("u2", "bob", "d3")
    untrack = [streams.track(who, lambda n=n: ended.append(n)) for n, who in enumerate((a1, a1, a2, b))]
    assert streams.track(Caller("", "", "d9"), lambda: ended.append("anon"))() is None  # not tracked
    assert len(streams) == 4
    assert streams.end(session_digest="d1") == 2 and sorted(ended) == [0, 1]
    untrack[0](), untrack[1]()
    assert streams.end(user_id="u1") == 1 and ended[-1] == 2
    untrack[2]()
    assert streams.end(user_id="u1") == 0 and len(streams) == 1
    untrack[3](), untrack[3]()  # twice is harmless
    assert len(streams) == 0
