"""Identity end to end, embedded and real, over gRPC and the bridge: sessions, cookies, CSRF,
throttling, indistinguishable login failures, and no secret ever in a log line or in clear in the DB."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from agora.identity.v1 import identity_pb2 as pb
from agora.identity.v1 import identity_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.identity.domain import IdentityRules
from services.identity.service import build
from services.kit.auth import EDGE_ADDRESS, edge_address
from services.kit.config import Settings
from services.kit.server import DomainServer
from services.mesh.launcher import Runtime
from tests.services.identity.harness import bearer, sign_up_and_login

PASSWORD = "correct horse battery"
CLIENT_LOGGERS = ("httpcore", "httpx", "hpack", "websockets")


EDGE_KEY = "k-edge-test"  # the service credential the bridge would sign addresses with


def internal(mesh) -> tuple:
    """CheckSession is ACCESS_INTERNAL: only callers with the mesh's service credential."""
    return (("x-api-key", mesh.runtime.settings.service_api_key),)


async def _fail(coro) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await coro
    return err.value


async def test_sign_up_login_whoami_logout_over_grpc(mesh):
    async with mesh.channel("identity") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        user_id, name, token = await sign_up_and_login(channel)
        me = await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token))
        assert me.user.id == user_id and me.user.email == f"{name}@example.test"
        check = await stub.CheckSession(pb.CheckSessionRequest(session_token=token), metadata=internal(mesh))
        assert check.valid and check.user_name == name and check.cache_ttl.seconds == 2
        public = await stub.GetUser(pb.GetUserRequest(user_id=user_id))
        assert public.user.user_name == name and public.user.email == ""
        taken = await _fail(stub.SignUp(pb.SignUpRequest(user_name=name.upper(), email="x@example.test",
                                                         password=PASSWORD)))
        assert taken.code() == grpc.StatusCode.ALREADY_EXISTS
        await stub.Logout(pb.LogoutRequest(), metadata=bearer(token))
        # revoked at once, for identity itself and for CheckSession (what other services ask)
        assert (await _fail(stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token)))).code() == \
            grpc.StatusCode.UNAUTHENTICATED
        assert not (await stub.CheckSession(pb.CheckSessionRequest(session_token=token),
                                            metadata=internal(mesh))).valid
        # a dead token does not stop its holder from logging in again
        again = await stub.Login(pb.LoginRequest(user_name=name, password=PASSWORD), metadata=bearer(token))
        assert again.session_token and again.session_token != token
        bad = await _fail(stub.GetUser(pb.GetUserRequest(user_id="not-a-uuid")))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_wrong_password_and_unknown_user_answer_the_same_in_comparable_time(mesh):
    async with mesh.channel("identity") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        _, name, _ = await sign_up_and_login(channel)

        async def attempt(user_name: str) -> tuple[grpc.StatusCode, str, float]:
            started = time.perf_counter()
            exc = await _fail(stub.Login(pb.LoginRequest(user_name=user_name, password="wrong password!")))
            return exc.code(), exc.details(), time.perf_counter() - started

        wrong, unknown = [], []
        for _ in range(8):  # interleaved, so load changes hit both alike
            wrong.append(await attempt(name))
            unknown.append(await attempt(f"nobody{uuid.uuid4().hex[:8]}"))
        assert {(c, m) for c, m, _ in wrong} == {(c, m) for c, m, _ in unknown} == {
            (grpc.StatusCode.UNAUTHENTICATED, "unknown user or wrong password")}
        ratio = statistics.median(t for *_, t in unknown) / statistics.median(t for *_, t in wrong)
        # Both paths do one argon2 verification; without the dummy hash the unknown user would
        # answer many times faster. Comparable = within a factor of two either way.
        assert 0.5 < ratio < 2.0, f"unknown/wrong median time ratio {ratio:.2f}"


async def test_bridge_sets_cookies_and_a_signed_csrf_cookie(mesh):
    async with mesh.channel("identity") as channel, httpx.AsyncClient(base_url=mesh.http_url) as http:
        _, name, _ = await sign_up_and_login(channel)
        csrf = await http.get("/v1/auth/csrftoken")
        token = csrf.json()["csrfToken"]
        assert csrf.status_code == 200 and token and http.cookies["agora_csrf"]
        jar_cookie = next(c for c in csrf.headers.get_list("set-cookie") if c.startswith("agora_csrf="))
        assert "HttpOnly" in jar_cookie and "SameSite=Lax" in jar_cookie
        assert token != http.cookies["agora_csrf"]  # a masked token, never the cookie itself
        login = await http.post("/v1/auth/login", json={"user_name": name, "password": PASSWORD},
                                headers={"x-csrf-token": token})
        cookies = login.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("agora_session="))
        assert "HttpOnly" in session and "SameSite=Lax" in session and "Path=/" in session
        assert not any(c.startswith("agora_csrf=") for c in cookies)  # login leaves the CSRF cookie alone
        assert (await http.get("/v1/auth/whoami")).status_code == 200  # cookie session, safe method
        no_csrf = await http.post("/v1/auth/logout", json={})
        assert no_csrf.status_code == 403
        out = await http.post("/v1/auth/logout", json={}, headers={"x-csrf-token": token})
        assert out.status_code == 200
        assert "agora_session" not in http.cookies  # cleared by Max-Age=0
        assert (await http.get("/v1/auth/whoami")).status_code == 401


async def test_passwords_and_tokens_never_in_logs_nor_in_clear_in_the_database(mesh, caplog):
    caplog.set_level(logging.DEBUG)
    password = f"Secret-{uuid.uuid4().hex}"
    async with mesh.channel("identity") as channel, httpx.AsyncClient(base_url=mesh.http_url) as http:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        user_id, name, token = await sign_up_and_login(channel, password=password)
        await _fail(stub.Login(pb.LoginRequest(user_name=name, password=password + "x")))
        csrf = (await http.get("/v1/auth/csrftoken")).json()["csrfToken"]
        login = await http.post("/v1/auth/login", json={"user_name": name, "password": password})
        secrets = [password, token, login.json()["sessionToken"], http.cookies["agora_csrf"], csrf]
        await http.post("/v1/auth/logout", json={}, headers={"x-csrf-token": csrf})
        await stub.CheckSession(pb.CheckSessionRequest(session_token=token), metadata=internal(mesh))
    # Everything the services, the bridge and the kit logged; not the test's own HTTP client,
    # which logs the Set-Cookie headers it receives at DEBUG.
    records = [r for r in caplog.records if not r.name.startswith(CLIENT_LOGGERS)]
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in records)
    assert any(r.name == "agora.rpc" for r in records), "expected the access log to have captured something"
    for secret in secrets:
        assert secret not in logged
    stored = await _database_dump(mesh)
    assert name in stored and user_id in stored  # the dump really holds the account ...
    for secret in secrets:
        assert secret not in stored  # ... but no password, session token or CSRF token in clear
    assert "$argon2id$" in stored


async def _database_dump(mesh) -> str:
    store = mesh.identity_store
    if mesh.backend == "embedded":
        files = [Path(store.path + suffix) for suffix in ("", "-wal", "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists()).decode("latin-1")

    def dump(conn) -> str:
        with conn.cursor() as cur:
            cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                        (store.schema,))
            tables = [r[0] for r in cur.fetchall()]
            rows = []
            for table in tables:
                cur.execute(f'SELECT row_to_json(t)::text FROM "{store.schema}"."{table}" t')
                rows.extend(r[0] for r in cur.fetchall())
            return "\n".join(rows)

    return await store.db.transaction(dump)


@contextlib.asynccontextmanager
async def identity_alone(tmp_path, rules: IdentityRules):
    """The identity server alone (embedded store) with rules of its own, and a channel to it; its
    service credential is EDGE_KEY, the key the bridge would sign callers' addresses with."""
    runtime = Runtime(Settings.from_env(backends="embedded", data_dir=tmp_path))
    server = DomainServer(await build(runtime, rules=rules), host="127.0.0.1", port=0, grace=0.5,
                          service_api_key=EDGE_KEY)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            yield channel
    finally:
        await server.stop()
        await runtime.close()
        await asyncio.sleep(0)


async def test_login_is_throttled_per_account_and_per_address(tmp_path):
    rules = IdentityRules(user_failures=3, user_window=60, address_attempts=6, address_window=60)
    async with identity_alone(tmp_path, rules) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        _, name, _ = await sign_up_and_login(channel)
        here = [(EDGE_ADDRESS, edge_address(EDGE_KEY, "198.51.100.7"))]  # as the bridge vouches
        for _ in range(3):
            await _fail(stub.Login(pb.LoginRequest(user_name=name, password="wrong password"),
                                   metadata=here))
        throttled = await _fail(stub.Login(pb.LoginRequest(user_name=name, password=PASSWORD),
                                           metadata=here))
        assert throttled.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = rpc_status.from_call(throttled).details
        assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details)
        # the same address, other accounts: allowed until the address's own budget (6) is spent
        for i in range(2):
            code = (await _fail(stub.Login(pb.LoginRequest(user_name=f"x{i}abc", password="pw-pw-pw"),
                                           metadata=here))).code()
            assert code == grpc.StatusCode.UNAUTHENTICATED
        blocked = await _fail(stub.Login(pb.LoginRequest(user_name="y1abc", password="pw-pw-pw"),
                                         metadata=here))
        assert blocked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        elsewhere = [(EDGE_ADDRESS, edge_address(EDGE_KEY, "203.0.113.9"))]
        code = (await _fail(stub.Login(pb.LoginRequest(user_name="y1abc", password="pw-pw-pw"),
                                       metadata=elsewhere))).code()
        assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_an_address_only_counts_when_the_bridge_vouched_for_it(tmp_path):
    """A direct gRPC caller cannot pick the address its attempts are counted under: a bare
    x-forwarded-for, or an edge address signed with another key, counts as the caller's own peer."""
    rules = IdentityRules(user_failures=100, user_window=60, address_attempts=3, address_window=60)
    async with identity_alone(tmp_path, rules) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        claims = [[("x-forwarded-for", f"198.51.100.{n}")] for n in range(1, 3)]
        claims.append([(EDGE_ADDRESS, edge_address("not-the-key", "198.51.100.9"))])
        for metadata in claims:  # three attempts, all from 127.0.0.1 whatever they claim
            code = (await _fail(stub.Login(pb.LoginRequest(user_name="nobody1", password="pw-pw-pw"),
                                           metadata=metadata))).code()
            assert code == grpc.StatusCode.UNAUTHENTICATED
        blocked = await _fail(stub.Login(pb.LoginRequest(user_name="nobody1", password="pw-pw-pw"),
                                         metadata=[("x-forwarded-for", "203.0.113.50")]))
        assert blocked.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the bridge's word for another address is taken: that address has its own budget
        vouched = [(EDGE_ADDRESS, edge_address(EDGE_KEY, "203.0.113.50"))]
        code = (await _fail(stub.Login(pb.LoginRequest(user_name="nobody1", password="pw-pw-pw"),
                                       metadata=vouched))).code()
        assert code == grpc.StatusCode.UNAUTHENTICATED
