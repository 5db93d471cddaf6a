"""The catalog storage port's contract, run against every adapter (SQLite, MongoDB replica set)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from agora.events.v1.catalog_pb2 import ProductCreated

from services.catalog import domain
from services.catalog.domain import (
    Money,
    Product,
    ProductMissing,
    ReservationConflict,
    ReservationReleased,
    ReservationState,
    StockShort,
    VersionMismatch,
)
from services.catalog.events import stock_events
from services.kit.bus import new_envelope

EVENT = new_envelope("catalog.product.created", "catalog", "k", ProductCreated())


def no_events(changes):
    return stock_events(changes, 1, "order")


@pytest.fixture(params=["sqlite", "mongo"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        from services.catalog.stores.sqlite import SqliteCatalogStore

        s = SqliteCatalogStore(tmp_path / "catalog.sqlite3")
    else:
        from services.catalog.stores.mongo import MongoCatalogStore

        s = MongoCatalogStore(request.getfixturevalue("mongo_url"), f"test_catalog_{uuid.uuid4().hex[:10]}")
    await s.start()
    yield s
    if request.param == "mongo":
        await s.drop()
    await s.close()


async def make(store, name="Widget", stock=10, seller="s1", category="tools", description="",
               attributes=None):
    p = domain.new_product(Product(id="", seller_id=seller, name=name, price=Money("USD", 1999), stock=stock,
                                   category=category, description=description, attributes=attributes or {}))
    await store.create(p, EVENT)
    await asyncio.sleep(0.002)  # distinct created_at for the newest-first order
    return p


async def test_create_get_roundtrip(store):
    p = await make(store, attributes={"color": "red", "size": {"w": 2.5}, "tags": ["a", "b"]})
    assert await store.get(p.id) == p
    assert await store.get("nope") is None


async def test_replace_is_conditional_on_version(store):
    p = await make(store)
    updated, changed = domain.apply_update(p, Product(id="", seller_id="", name="Gadget", price=None),
                                           ["name"])
    assert changed == ["name"]
    await store.replace(updated, p.version, [])
    assert (await store.get(p.id)).name == "Gadget"
    with pytest.raises(VersionMismatch):
        await store.replace(updated, p.version, [])
    with pytest.raises(ProductMissing):
        await store.replace(Product(id="nope", seller_id="s", name="x", price=Money("USD", 1)), 1, [])


async def test_list_newest_first_filters_and_search(store):
    a = await make(store, "Red hammer", seller="s1", category="tools")
    b = await make(store, "Blue book", seller="s2", category="books", description="a novel about hammers")
    c = await make(store, "Green lamp", seller="s1", category="home")
    assert [p.id for p in await store.list("", "", "", 0, 10)] == [c.id, b.id, a.id]
    assert [p.id for p in await store.list("", "", "", 1, 1)] == [b.id]
    assert [p.id for p in await store.list("s1", "", "", 0, 10)] == [c.id, a.id]
    assert [p.id for p in await store.list("", "books", "", 0, 10)] == [b.id]
    assert {p.id for p in await store.list("", "", "LAMP", 0, 10)} == {c.id}
    assert {p.id for p in await store.list("", "", "novel", 0, 10)} == {b.id}
    assert {p.id for p in await store.list("s1", "", "hammer lamp", 0, 10)} == {a.id, c.id}
    assert await store.list("", "", "zebra", 0, 10) == []


async def test_reserve_all_or_nothing_and_idempotent(store):
    a = await make(store, stock=5)
    b = await make(store, stock=1)
    items = ((a.id, 3), (b.id, 2))
    with pytest.raises(StockShort) as short:
        await store.reserve("o1", tuple(sorted(items)), domain.now(), no_events)
    assert short.value.shortages == {b.id: (2, 1)}
    assert (await store.get(a.id)).stock == 5  # nothing taken
    ok = tuple(sorted(((a.id, 3), (b.id, 1))))
    r = await store.reserve("o2", ok, domain.now(), no_events)
    assert r.state is ReservationState.RESERVED and r.items == ok
    again = await store.reserve("o2", ok, domain.now(), no_events)
    assert again.items == ok
    assert (await store.get(a.id)).stock == 2 and (await store.get(b.id)).stock == 0
    assert (await store.get(a.id)).version == a.version + 1
    with pytest.raises(ReservationConflict):
        await store.reserve("o2", ((a.id, 1),), domain.now(), no_events)
    with pytest.raises(ProductMissing):
        await store.reserve("o3", (("ghost", 1),), domain.now(), no_events)


async def test_release_once_and_blocks_late_reserve(store):
    a = await make(store, stock=5)
    await store.reserve("o1", ((a.id, 4),), domain.now(), no_events)
    r = await store.release("o1", "payment failed", domain.now(), no_events)
    assert r.state is ReservationState.RELEASED and r.release_reason == "payment failed"
    await store.release("o1", "again", domain.now(), no_events)
    assert (await store.get(a.id)).stock == 5
    early = await store.release("o9", "cancelled", domain.now(), no_events)
    assert early.state is ReservationState.RELEASED and early.items == ()
    with pytest.raises(ReservationReleased):
        await store.reserve("o9", ((a.id, 1),), domain.now(), no_events)
    assert (await store.get(a.id)).stock == 5


async def test_adjust_never_negative_and_idempotent_by_request(store):
    a = await make(store, stock=2)
    assert (await store.adjust(a.id, 5, "r1", "restock", domain.now(), no_events)).stock == 7
    assert (await store.adjust(a.id, 5, "r1", "restock", domain.now(), no_events)).stock == 7
    with pytest.raises(StockShort):
        await store.adjust(a.id, -8, "", "write-off", domain.now(), no_events)
    assert (await store.adjust(a.id, -7, "", "write-off", domain.now(), no_events)).stock == 0
    with pytest.raises(ProductMissing):
        await store.adjust("ghost", 1, "", "", domain.now(), no_events)


async def test_concurrent_reservations_never_oversell(store):
    a = await make(store, stock=10)

    async def order(i):
        try:
            await store.reserve(f"order-{i}", ((a.id, 1),), domain.now(), no_events)
            return True
        except StockShort:
            return False

    results = await asyncio.gather(*(order(i) for i in range(40)))
    assert sum(results) == 10
    assert (await store.get(a.id)).stock == 0


async def test_stock_events_go_to_the_outbox(store):
    from services.kit.bus.inprocess import InProcessBus
    from services.kit.bus.outbox import outbox_relay

    a = await make(store, stock=3)
    bus = InProcessBus()
    await bus.start()
    got = []

    async def handler(envelope):
        got.append(envelope.type)

    await bus.subscribe("t", ["catalog.#"], handler)
    await store.reserve("o1", ((a.id, 2),), domain.now(), no_events)
    relay = outbox_relay(bus, store)
    while await relay.relay_once():
        pass
    await relay.stop()
    for _ in range(200):
        if len(got) == 2:
            break
        await asyncio.sleep(0.01)
    assert got == ["catalog.product.created", "catalog.product.stock_changed"]
    await bus.close()
