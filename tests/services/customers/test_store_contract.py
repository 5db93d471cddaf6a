"""The customers storage port's contract, run against every adapter (SQLite, PostgreSQL)."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from services.customers import domain
from services.customers.domain import EmailTaken, Kind, Party
from services.customers.events import created_event


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        from services.customers.stores.sqlite import SqliteCustomerStore

        s = SqliteCustomerStore(tmp_path / "customers.sqlite3")
    else:
        from services.customers.stores.postgres import PostgresCustomerStore

        url = request.getfixturevalue("postgres_url")
        s = PostgresCustomerStore(url, schema=f"test_customers_{uuid.uuid4().hex[:10]}")
    await s.start()
    yield s
    if request.param == "postgres":
        await s.drop()
    await s.close()


def party(kind: Kind, name: str, email: str) -> Party:
    return domain.new_party(kind, Party(kind=kind, id="", name=name, email=email), user_id="")


async def test_create_get_roundtrip(store):
    p = party(Kind.CLIENT, "Ada Lovelace", "Ada@Example.com")
    p = dataclasses.replace(p, phone="+5511987654321",
                            address=domain.Address(city="London", country_code="GB"))
    await store.create(p, created_event(p))
    got = await store.get(Kind.CLIENT, p.id)
    assert got == p
    assert await store.get(Kind.SELLER, p.id) is None
    assert await store.get(Kind.CLIENT, str(uuid.uuid4())) is None


async def test_email_unique_per_kind_case_insensitive(store):
    a = party(Kind.CLIENT, "A", "same@example.com")
    await store.create(a, created_event(a))
    b = party(Kind.CLIENT, "B", "SAME@example.com")
    with pytest.raises(EmailTaken):
        await store.create(b, created_event(b))
    s = party(Kind.SELLER, "S", "same@example.com")  # a seller may share a client's email
    await store.create(s, created_event(s))


async def test_update_replaces_fields_and_keeps_email_unique(store):
    a = party(Kind.SELLER, "Shop A", "a@example.com")
    b = party(Kind.SELLER, "Shop B", "b@example.com")
    for p in (a, b):
        await store.create(p, created_event(p))
    changed = domain.apply_update(a, Party(kind=Kind.SELLER, id="", name="Shop A2", email="",
                                           description="hi"),
                                  ["name", "description"])
    await store.update(changed)
    got = await store.get(Kind.SELLER, a.id)
    assert (got.name, got.description, got.email) == ("Shop A2", "hi", "a@example.com")
    stolen = dataclasses.replace(changed, email="B@example.com")
    with pytest.raises(EmailTaken):
        await store.update(stolen)


async def test_list_pages_oldest_first_and_searches(store):
    made = []
    for i in range(5):
        p = party(Kind.CLIENT, f"Person {i}", f"p{i}@example.com")
        await store.create(p, created_event(p))
        made.append(p.id)
    extra = party(Kind.CLIENT, "Grace 100%_", "grace@navy.mil")
    await store.create(extra, created_event(extra))
    first = await store.list(Kind.CLIENT, "", 0, 3)
    assert [p.id for _, p in first] == made[:3]
    rest = await store.list(Kind.CLIENT, "", first[-1][0], 10)
    assert [p.id for _, p in rest] == made[3:] + [extra.id]
    assert [p.id for _, p in await store.list(Kind.CLIENT, "NAVY", 0, 10)] == [extra.id]
    assert [p.id for _, p in await store.list(Kind.CLIENT, "person 3", 0, 10)] == [made[3]]
    assert [p.id for _, p in await store.list(Kind.CLIENT, "100%_", 0, 10)] == [extra.id]
    assert [p.id for _, p in await store.list(Kind.CLIENT, "%", 0, 10)] == [extra.id]
    assert await store.list(Kind.CLIENT, "1%", 0, 10) == []
    assert await store.list(Kind.SELLER, "", 0, 10) == []


async def test_create_writes_the_event_to_the_outbox(store):
    from services.kit.bus.inprocess import InProcessBus
    from services.kit.bus.outbox import outbox_relay

    bus = InProcessBus()
    await bus.start()
    got = []

    async def handler(envelope):
        got.append(envelope)

    await bus.subscribe("t", ["customers.#"], handler)
    p = party(Kind.CLIENT, "Outboxed", "o@example.com")
    event = created_event(p)
    await store.create(p, event)
    relay = outbox_relay(bus, store)
    assert await relay.relay_once() == 1
    await relay.stop()
    for _ in range(100):
        if got:
            break
        import asyncio

        await asyncio.sleep(0.01)
    assert [e.id for e in got] == [event.id]
    await bus.close()
