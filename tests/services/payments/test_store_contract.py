"""One contract for every PaymentStore adapter: SQLite (embedded) and PostgreSQL (real, throw-away schema)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import timedelta

import pytest

from services.kit.bus import new_envelope
from services.payments import domain
from services.payments.domain import Money, PaymentFilter, Status


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        from services.payments.stores.sqlite import SqlitePaymentStore

        s = SqlitePaymentStore(tmp_path / "payments.sqlite3")
    else:
        from services.payments.stores.postgres import PostgresPaymentStore

        s = PostgresPaymentStore(request.getfixturevalue("postgres_url"),
                                 schema=f"test_payments_{uuid.uuid4().hex[:10]}")
    await s.start()
    yield s
    if request.param == "postgres":
        await s.drop()
    await s.close()


def new(order_id=None, client="c1", user="", at=None):
    return domain.open_payment(order_id or str(uuid.uuid4()), client, user, Money("USD", 1234), "tok_ok",
                               "test", at or domain.now())


async def test_one_payment_per_order(store):
    first = new("o-1")
    stored, created = await store.open(first)
    assert created and stored == first
    again, created = await store.open(new("o-1"))
    assert not created and again.id == first.id
    assert await store.get(first.id) == first
    assert await store.get_by_order("o-1") == first
    assert await store.get("nope") is None


async def test_save_is_compare_and_set_and_carries_the_event(store):
    p, _ = await store.open(new())
    attempt = domain.attempting(p, domain.now())
    assert await store.save(attempt, {Status.PENDING})
    assert not await store.save(attempt, {Status.PENDING})  # someone else moved it
    done = domain.succeeded(attempt, "ref-1", domain.now())
    event = new_envelope("payments.payment.succeeded", "payments", p.order_id, domain_money_event())
    assert await store.save(done, {Status.PROCESSING}, event)
    got = await store.get(p.id)
    assert (got.status, got.attempts, got.provider_reference) == (Status.SUCCEEDED, 1, "ref-1")
    assert got.completed_at == done.completed_at


def domain_money_event():
    from agora.events.v1.payments_pb2 import PaymentSucceeded

    return PaymentSucceeded(payment_id="x")


async def test_cancel_flag_is_separate_from_state(store):
    p, _ = await store.open(new("o-2"))
    assert await store.request_cancel("missing") is None
    flagged = await store.request_cancel("o-2")
    assert flagged.cancel_requested
    assert await store.save(domain.attempting(p, domain.now()), {Status.PENDING})
    assert (await store.get(p.id)).cancel_requested  # a state write does not clear it


async def test_list_newest_first_paged_and_filtered(store):
    base = domain.now()
    made = []
    for i in range(5):
        p, _ = await store.open(new(client="c-list" if i % 2 == 0 else "c-other", user=f"u{i % 2}",
                                    at=base + timedelta(milliseconds=i)))
        made.append(p)
    page, after = await store.list(PaymentFilter(), "", 2)
    seen = [p.id for p in page]
    while after:
        page, after = await store.list(PaymentFilter(), after, 2)
        seen += [p.id for p in page]
    ours = [p.id for p in made]
    assert [i for i in seen if i in ours] == list(reversed(ours))
    evens, _ = await store.list(PaymentFilter(client_id="c-list"), "", 50)
    assert [p.id for p in evens] == [made[4].id, made[2].id, made[0].id]
    mine, _ = await store.list(PaymentFilter(user_id="u1"), "", 50)
    assert {p.id for p in mine} >= {made[1].id, made[3].id} and made[0].id not in {p.id for p in mine}
    await store.save(dataclasses.replace(made[1], status=Status.FAILED), {Status.PENDING})
    failed, _ = await store.list(PaymentFilter(status=Status.FAILED, client_id="c-other"), "", 50)
    assert [p.id for p in failed] == [made[1].id]
