"""One contract for every identity store adapter: SQLite and PostgreSQL (throw-away schema)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from agora.identity.v1 import identity_pb2 as pb

from services.identity.domain import NameTaken, NewUser
from services.identity.stores.postgres import PostgresIdentityStore
from services.identity.stores.sqlite import SqliteIdentityStore
from services.kit.bus import new_envelope

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteIdentityStore(tmp_path / "identity.sqlite3")
    else:
        s = PostgresIdentityStore(request.getfixturevalue("postgres_url"),
                                  schema=f"t{uuid.uuid4().hex[:10]}_identity")
    await s.start()
    await s.start()  # idempotent
    try:
        yield s
    finally:
        if isinstance(s, PostgresIdentityStore):
            await s.drop()
        await s.close()


def _event(user_id: str):
    return [new_envelope("identity.user.registered", "identity", user_id, pb.WhoAmIRequest())]


async def _user(store, name: str = "Alice"):
    user_id = str(uuid.uuid4())
    return await store.create_user(user_id, NewUser(name, f"{name}@Example.test", "bio"), "$argon2id$hash",
                                   NOW, _event(user_id))


async def test_users_are_found_case_insensitively(store):
    user = await _user(store)
    found, password_hash = await store.find_login("email", "alice@example.test")
    assert found == user and password_hash == "$argon2id$hash"
    assert (await store.find_login("user_name", "alice"))[0].id == user.id
    assert await store.find_login("user_name", "bob") is None
    assert await store.get_user(user.id) == user
    assert await store.get_user(str(uuid.uuid4())) is None


async def test_user_name_and_email_are_unique(store):
    await _user(store)
    with pytest.raises(NameTaken) as err:
        await store.create_user(str(uuid.uuid4()), NewUser("ALICE", "other@example.test", ""), "h", NOW, [])
    assert err.value.field_name == "user_name"
    with pytest.raises(NameTaken) as err:
        await store.create_user(str(uuid.uuid4()), NewUser("alice2", "alice@example.TEST", ""), "h", NOW, [])
    assert err.value.field_name == "email"


async def test_sign_up_writes_its_event_to_the_outbox(store):
    await _user(store)
    conn = store.relay_connection()
    try:
        assert len(store.outbox.claim(conn, 10)) == 1
        store.outbox.release(conn)
    finally:
        conn.close()


async def test_sessions_live_until_revoked_or_expired(store):
    user = await _user(store)
    await store.create_session("h1", user.id, NOW, NOW + timedelta(hours=1))
    await store.create_session("h2", user.id, NOW, NOW + timedelta(hours=1))
    await store.create_session("old", user.id, NOW - timedelta(hours=2), NOW - timedelta(hours=1))
    session = await store.find_session("h1", NOW)
    assert session.user.id == user.id and session.expires_at == NOW + timedelta(hours=1)
    assert await store.find_session("old", NOW) is None
    assert await store.find_session("nope", NOW) is None
    assert await store.revoke_session("h1", NOW)
    assert not await store.revoke_session("h1", NOW)
    assert await store.find_session("h1", NOW) is None
    assert await store.find_session("h2", NOW) is not None
    assert await store.revoke_all_sessions(user.id, NOW) == 1
    assert await store.find_session("h2", NOW) is None


async def test_ping(store):
    assert await store.ping()
