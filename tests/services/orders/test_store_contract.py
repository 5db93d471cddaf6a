"""The orders storage port's contract, run against every adapter (SQLite, Cassandra)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from agora.events.v1.orders_pb2 import OrderCreated

from services.kit.bus import new_envelope
from services.orders import domain
from services.orders.domain import Money, ProductInfo, Status


@pytest.fixture(params=["sqlite", "cassandra"])
def backend(request):
    return request.getfixturevalue("orders_cassandra") if request.param == "cassandra" else None


@pytest.fixture
async def store(backend, tmp_path):
    if backend is None:
        from services.orders.stores.sqlite import SqliteOrderStore

        s = SqliteOrderStore(tmp_path / "orders.sqlite3")
        await s.start()
        yield s
        await s.close()
    else:
        _, s = backend
        await s.truncate()
        yield s


PRODUCTS = {
    "p1": ProductInfo("p1", "Pen", "s1", Money("USD", 150)),
    "p2": ProductInfo("p2", "Book", "s2", Money("USD", 2999)),
}


def placed(client="c1", at=None, items=(("p1", 2), ("p2", 1))):
    oid = str(uuid.uuid4())
    order = domain.place(oid, client, "", list(items), PRODUCTS, at or domain.now())
    return order, new_envelope("orders.order.created", "orders", oid, OrderCreated(order_id=oid))


async def test_create_get_roundtrip(store):
    order, event = placed()
    await store.create(order, event)
    got = await store.get(order.id)
    assert got == order
    assert got.total == Money("USD", 2 * 150 + 2999)
    assert [i.product_name for i in got.items] == ["Pen", "Book"]
    assert await store.get(str(uuid.uuid4())) is None


async def test_transition_appends_history(store):
    order, event = placed()
    await store.create(order, event)
    paid = domain.advance(order, Status.PAID, "payment succeeded", domain.now(), "evt-1", payment_id="pay-1")
    await store.transition(paid, None)
    cancelled = domain.cancel(paid, "", domain.now())
    await store.transition(cancelled, None)
    got = await store.get(order.id)
    assert got == cancelled
    assert [(c.sequence, c.status) for c in got.history] == [(1, Status.PENDING), (2, Status.PAID),
                                                              (3, Status.CANCELLED)]
    assert got.payment_id == "pay-1" and got.history[1].event_id == "evt-1"


async def test_list_by_client_newest_first_paged(store):
    start = domain.now()
    mine = []
    for i in range(5):
        order, event = placed("alice", start + timedelta(seconds=i))
        await store.create(order, event)
        mine.append(order.id)
    other, event = placed("bob")
    await store.create(other, event)
    first, cursor = await store.list_by_client("alice", "", 3)
    assert [o.id for o in first] == mine[::-1][:3]
    rest, end = await store.list_by_client("alice", cursor, 3)
    assert [o.id for o in rest] == mine[::-1][3:]
    assert end == "" or (await store.list_by_client("alice", end, 3))[0] == []
    assert (await store.list_by_client("nobody", "", 10)) == ([], "")


async def test_list_all_filters_by_status(store):
    ids = set()
    for _ in range(4):
        order, event = placed()
        await store.create(order, event)
        ids.add(order.id)
    last = await store.get(order.id)
    await store.transition(domain.cancel(last, "", domain.now()), None)
    seen, cursor = [], ""
    while True:
        page, cursor = await store.list_all(None, cursor, 3)
        seen += [o.id for o in page]
        if not cursor:
            break
    assert set(seen) == ids and len(seen) == 4
    cancelled, _ = await store.list_all(Status.CANCELLED, "", 50)
    assert [o.id for o in cancelled] == [order.id]


async def test_events_go_through_the_outbox(store):
    from services.kit.bus.inprocess import InProcessBus
    from services.kit.bus.outbox import outbox_relay

    bus = InProcessBus()
    await bus.start()
    got = []

    async def handler(envelope):
        got.append(envelope.id)

    await bus.subscribe("t", ["orders.#"], handler)
    order, event = placed()
    await store.create(order, event)
    relay = outbox_relay(bus, store)
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0  # sent rows are not sent again
    await relay.stop()
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [event.id]
    await bus.close()


# -- compare-and-set transitions and the payment-timeout index (issue 9) ---------------------------

async def test_transition_is_compare_and_set_under_a_race(store):
    order = _placed(store_time_offset=timedelta())
    await store.create(order, _created(order))
    at = domain.now()
    paid = domain.paid(order, "pay-1", at, "evt-1")
    cancelled = domain.cancel(order, "", at)
    results = await asyncio.gather(*(store.transition(o, None, expect=Status.PENDING)
                                     for o in (paid, cancelled)))
    assert sorted(results) == [False, True]  # exactly one writer wins
    got = await store.get(order.id)
    assert len(got.history) == 2 and got.status in (Status.PAID, Status.CANCELLED)
    assert got.history[-1].status is got.status


async def test_pending_due_lists_only_pending_orders_past_due(store):
    past = _placed(store_time_offset=-timedelta(hours=1))
    future = _placed(store_time_offset=timedelta(hours=1))
    done = _placed(store_time_offset=-timedelta(hours=1))
    for o in (past, future, done):
        await store.create(o, _created(o))
    await store.transition(domain.paid(done, "p", domain.now(), "e"), None, expect=Status.PENDING)
    due = await store.pending_due(domain.now(), 100)
    ids = [o.id for o in due]
    assert past.id in ids and future.id not in ids and done.id not in ids


def _placed(store_time_offset: timedelta):
    at = domain.now()
    return domain.place(str(uuid.uuid4()), "c-due", "", [("p1", 1)], PRODUCTS, at,
                        payment_timeout=store_time_offset)


def _created(order):
    return new_envelope("orders.order.created", "orders", order.id, OrderCreated(order_id=order.id))
