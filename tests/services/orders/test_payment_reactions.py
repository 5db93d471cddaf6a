"""Orders' reactions to payment outcomes and the payment-timeout sweeper, on the SQLite store (no servers)."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from agora.events.v1 import orders_pb2, payments_pb2

from services.kit.bus import new_envelope, unpack
from services.kit.bus.inprocess import InProcessBus
from services.kit.bus.outbox import outbox_relay
from services.orders import domain
from services.orders.clocks import PaymentTimeouts
from services.orders.consumers import PaymentOutcomes
from services.orders.domain import Money, ProductInfo, Status
from services.orders.ledger import OrderLedger
from services.orders.stores.sqlite import SqliteOrderStore

PRODUCTS = {"p1": ProductInfo("p1", "Pen", "s1", Money("USD", 150))}


@pytest.fixture
async def orders(tmp_path):
    store = SqliteOrderStore(tmp_path / "orders.sqlite3")
    await store.start()
    bus = InProcessBus()
    await bus.start()
    published = []

    async def record(envelope):
        published.append(envelope)

    await bus.subscribe("test-sink", ["orders.#"], record)
    relay = outbox_relay(bus, store)
    await relay.start()
    service = OrderLedger(store, wake=relay.wake)
    service.published = published
    yield service
    await relay.stop()
    await bus.close()
    await store.close()


async def place(service, due_in: timedelta):
    order = domain.place(str(uuid.uuid4()), "c1", "", [("p1", 2)], PRODUCTS, domain.now(),
                         payment_timeout=due_in)
    await service.store.create(order, new_envelope("orders.order.created", "orders", order.id,
                                                   orders_pb2.OrderCreated(order_id=order.id)))
    return order


async def published(service, type_: str, order_id: str):
    import asyncio

    for _ in range(200):
        found = [e for e in service.published if e.type == type_ and e.key == order_id]
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {type_} for {order_id}")


async def test_success_then_redelivery_changes_once(orders):
    order = await place(orders, timedelta(minutes=5))
    event = new_envelope("payments.payment.succeeded", "payments", order.id,
                         payments_pb2.PaymentSucceeded(payment_id="pay-1", order_id=order.id))
    consumer = PaymentOutcomes(orders)
    await consumer.handle(event)
    await consumer.handle(event)  # redelivered
    got = await orders.store.get(order.id)
    assert [h.status for h in got.history] == [Status.PENDING, Status.PAID] and got.payment_id == "pay-1"
    assert got.history[-1].event_id == event.id
    paid = await published(orders, "orders.order.paid", order.id)
    assert len({e.id for e in paid}) == 1


async def test_failure_publishes_order_failed_with_lines(orders):
    order = await place(orders, timedelta(minutes=5))
    outcome = payments_pb2.PaymentFailed(payment_id="p", order_id=order.id, reason="card_declined")
    await PaymentOutcomes(orders).handle(new_envelope("payments.payment.failed", "payments", order.id,
                                                      outcome))
    [failed] = await published(orders, "orders.order.failed", order.id)
    body = unpack(failed, orders_pb2.OrderFailed)
    assert body.reason == "card_declined" and [(i.product_id, i.quantity) for i in body.items] == [("p1", 2)]


async def test_sweeper_fails_orders_past_due_only(orders):
    late = await place(orders, timedelta(seconds=-1))
    fine = await place(orders, timedelta(minutes=5))
    assert await PaymentTimeouts(orders).sweep() == 1
    assert (await orders.store.get(late.id)).status is Status.PAYMENT_FAILED
    assert (await orders.store.get(fine.id)).status is Status.PENDING
    [failed] = await published(orders, "orders.order.failed", late.id)
    assert unpack(failed, orders_pb2.OrderFailed).reason == "payment_timed_out"
    assert await PaymentTimeouts(orders).sweep() == 0
