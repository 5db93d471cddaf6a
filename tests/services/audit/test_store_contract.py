"""The audit storage port's contract, run against every adapter (SQLite, Cassandra)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.audit import domain
from services.audit.domain import AuditEvent, TypePattern


@pytest.fixture(params=["sqlite", "cassandra"])
def backend(request):
    return request.getfixturevalue("audit_cassandra") if request.param == "cassandra" else None


@pytest.fixture
async def store(backend, tmp_path):
    if backend is None:
        from services.audit.stores.sqlite import SqliteAuditStore

        s = SqliteAuditStore(tmp_path / "audit.sqlite3")
        await s.start()
        yield s
        await s.close()
    else:
        _, s = backend
        await s.truncate()
        yield s


def event(type="orders.order.created", key="k1", at=None, source="orders", **payload) -> AuditEvent:
    return AuditEvent(id=str(uuid.uuid4()), type=type, source=source, key=key,
                      occurred_at=domain.to_ms(at or domain.now()), payload=payload or {"n": 1},
                      payload_type="agora.events.v1.X", headers={"traceparent": "00-abc-def-01"})


async def test_record_once_and_get(store):
    e = event(total={"amountMinor": "1999"})
    recorded, new = await store.record(e)
    assert new and recorded.sequence > 0 and recorded.recorded_at is not None
    again, new_again = await store.record(e)
    assert not new_again and again.sequence == recorded.sequence
    got = await store.get(e.id)
    assert got == recorded
    assert got.payload == {"total": {"amountMinor": "1999"}} and got.headers == e.headers
    assert await store.get(str(uuid.uuid4())) is None


async def test_sequences_increase_and_replay(store):
    before = await store.last_sequence()
    recorded = [(await store.record(event(key=f"k{i}")))[0] for i in range(5)]
    seqs = [r.sequence for r in recorded]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5 and seqs[0] > before
    assert seqs == list(range(seqs[0], seqs[0] + 5))  # dense within one process
    replay = await store.since(seqs[1], seqs[3])
    assert [e.sequence for e in replay] == seqs[2:4]


async def test_query_by_range_type_key_source_in_time_order(store):
    base = domain.now() - timedelta(hours=30)  # spans two day partitions
    made = []
    for i, type in enumerate(["orders.order.created", "catalog.product.created", "orders.order.paid",
                              "customers.client.created", "orders.order.created"]):
        e = event(type=type, key="k-odd" if i % 2 else "k-even", at=base + timedelta(hours=7 * i),
                  source="web" if i == 4 else type.split(".")[0])
        made.append((await store.record(e))[0])
    start, end = base, base + timedelta(days=2)
    everything = await store.query(start, end, None, "", "", None, 50)
    assert [e.id for e in everything] == [e.id for e in made], [(e.type, e.key, e.occurred_at)
                                                                for e in everything]
    orders = await store.query(start, end, TypePattern.parse("orders.*"), "", "", None, 50)
    assert [e.id for e in orders] == [made[0].id, made[2].id, made[4].id]
    assert [e.id for e in await store.query(start, end, TypePattern.parse("*.created"), "k-even", "", None,
                                            50)] == [made[0].id, made[4].id]
    assert [e.id for e in await store.query(start, end, None, "", "web", None, 50)] == [made[4].id]
    exact = await store.query(start, end, TypePattern.parse("orders.order.paid"), "", "", None, 50)
    assert [e.id for e in exact] == [made[2].id]
    window = await store.query(base + timedelta(hours=7), base + timedelta(hours=21), None, "", "", None, 50)
    assert [e.id for e in window] == [made[1].id, made[2].id]  # end is exclusive
    first = await store.query(start, end, None, "", "", None, 2)
    cursor = (domain.epoch_ms(first[-1].occurred_at), first[-1].sequence)
    rest = await store.query(start, end, None, "", "", cursor, 50)
    assert [e.id for e in first + rest] == [e.id for e in made]


async def test_same_instant_orders_by_sequence(store):
    at = domain.now()
    made = [(await store.record(event(at=at, key=f"same{i}")))[0] for i in range(3)]
    got = await store.query(at - timedelta(seconds=1), at + timedelta(seconds=1), None, "", "", None, 10)
    assert [e.id for e in got] == [e.id for e in made]


async def test_concurrent_records_get_distinct_sequences(store):
    results = await asyncio.gather(*(store.record(event(key=f"c{i}")) for i in range(30)))
    seqs = [r.sequence for r, _ in results]
    assert len(set(seqs)) == 30
