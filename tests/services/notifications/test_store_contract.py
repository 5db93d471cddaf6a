"""One contract for every NotificationStore adapter: SQLite (embedded) and PostgreSQL (throw-away schema)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from services.notifications import domain
from services.notifications.domain import Channel, DeliveryRules, Intent, NotificationFilter, Status


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        from services.notifications.stores.sqlite import SqliteNotificationStore

        s = SqliteNotificationStore(tmp_path / "n.sqlite3")
    else:
        from services.notifications.stores.postgres import PostgresNotificationStore

        s = PostgresNotificationStore(request.getfixturevalue("postgres_url"),
                                      schema=f"test_notifications_{uuid.uuid4().hex[:10]}")
    await s.start()
    yield s
    if request.param == "postgres":
        await s.drop()
    await s.close()


def queued(event_id="e1", channel=Channel.EMAIL, recipient="Ada@Example.com", order_id="o1", user_id=""):
    intent = Intent("order_paid", "client:c1", {"order_id": order_id, "amount": "1.00 USD"},
                    order_id=order_id, user_id=user_id)
    return domain.queue(event_id, "orders.order.paid", intent, channel, recipient, domain.now())


async def test_unique_per_event_channel_recipient(store):
    a, b = queued(), queued(channel=Channel.SMS, recipient="+15550001111")
    created = await store.create([a, b])
    assert [n for _, n in created] == [a, b] and created[0][0] < created[1][0]
    assert await store.create([queued()]) == []  # the same event again: nothing new
    assert (await store.get(a.id)).recipient == "ada@example.com"


async def test_claim_lease_record_and_changes(store):
    n = queued(event_id="e2")
    [(first_seq, _)] = await store.create([n])
    at = domain.now()
    claimed = await store.claim_due(at, 10, 30)
    assert [c.id for c in claimed] == [n.id]
    assert await store.claim_due(at, 10, 30) == []  # leased
    rules = DeliveryRules(max_attempts=3, retry_delay=10)
    retry = domain.attempt_failed(n, "SMTP down", rules, domain.now())
    seq = await store.record(retry)
    assert seq > first_seq and (await store.get(n.id)).status is Status.RETRYING
    assert await store.claim_due(domain.now(), 10, 30) == []  # not due yet
    later = await store.claim_due(domain.now() + timedelta(seconds=11), 10, 30)
    assert [c.id for c in later] == [n.id]
    sent = domain.delivered(retry, domain.now())
    last = await store.record(sent)
    changes = await store.changes(first_seq - 1, last, 100)
    assert [c.status for _, c in changes] == [Status.QUEUED, Status.RETRYING, Status.SENT]
    assert await store.last_sequence() == last


async def test_list_filters_and_pages(store):
    for i in range(3):
        await store.create([queued(event_id=f"l{i}", order_id="o-list", user_id="u1" if i else "u2")])
        await asyncio.sleep(0.003)  # distinct created_at (kept to the millisecond)
    await store.create([queued(event_id="other", order_id="o-other", recipient="bob@example.com")])
    page, after = await store.list(NotificationFilter(order_id="o-list"), "", 2)
    rest, end = await store.list(NotificationFilter(order_id="o-list"), after, 2)
    assert len(page) == 2 and len(rest) == 1 and end == ""
    assert [n.event_id for n in page + rest] == ["l2", "l1", "l0"]
    mine, _ = await store.list(NotificationFilter(user_id="u1"), "", 50)
    assert {n.event_id for n in mine} == {"l1", "l2"}
    bob, _ = await store.list(NotificationFilter(recipient="bob@example.com"), "", 50)
    assert [n.event_id for n in bob] == ["other"]


async def test_contacts(store):
    assert await store.contact("u9") is None
    await store.remember_contact("u9", "nine@example.com")
    await store.remember_contact("u9", "new@example.com")
    assert await store.contact("u9") == "new@example.com"
