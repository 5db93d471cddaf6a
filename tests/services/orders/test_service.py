"""The OrderServicer and the OrderLedger against the embedded SQLite store, with no gRPC server:
the servicer is called directly (its Mesh is a stand-in), and a payment consumer handles events
with a ledger and a store alone."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from datetime import timedelta

import pytest
from agora.events.v1 import payments_pb2
from agora.orders.v1 import orders_pb2 as pb

from services.kit import auth
from services.kit.bus import new_envelope
from services.kit.errors import InvalidArgument, NotFound, OutOfRange, PermissionDenied
from services.kit.values import Money
from services.orders import domain
from services.orders.consumers import PaymentOutcomes
from services.orders.domain import ProductInfo, Status
from services.orders.events import created_event
from services.orders.ledger import OrderLedger
from services.orders.service import OrderServicer
from services.orders.stores.sqlite import SqliteOrderStore

PRODUCTS = {"p1": ProductInfo("p1", "Pen", "s1", Money("USD", 150)),
            "p2": ProductInfo("p2", "Book", "s2", Money("USD", 2999))}


class FakeMesh:
    """What CreateOrder asks of customers and catalog, answered from dicts."""

    def __init__(self, clients: dict[str, str]) -> None:
        self.clients = clients  # client id -> owner user id ('' = nobody's)
        self.reserved: list[tuple[str, list[tuple[str, int]]]] = []
        self.released: list[str] = []

    async def client_owner(self, client_id: str) -> str | None:
        return self.clients.get(client_id)

    async def product(self, product_id: str) -> ProductInfo | None:
        return PRODUCTS.get(product_id)

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> None:
        self.reserved.append((order_id, items))

    async def release(self, order_id: str, reason: str) -> None:
        self.released.append(order_id)


@contextlib.contextmanager
def signed_in(user_id: str):
    """The call's caller, as the kit's interceptor sets it for a live session."""
    token = auth._caller.set(auth.Caller(user_id, user_id))
    try:
        yield
    finally:
        auth._caller.reset(token)


@pytest.fixture
async def store(tmp_path):
    s = SqliteOrderStore(tmp_path / "orders.sqlite3")
    await s.start()
    yield s
    await s.close()


@pytest.fixture
def mesh():
    return FakeMesh({"seed-client": "", "ada-client": "ada"})


@pytest.fixture
def servicer(store, mesh):
    return OrderServicer(OrderLedger(store), mesh, payment_timeout=timedelta(minutes=7))


def outbox(store) -> list[tuple[str, str]]:
    """(event id, type) of every event the store queued, oldest first."""
    with contextlib.closing(sqlite3.connect(store.path)) as conn:
        return conn.execute("SELECT event_id, type FROM orders_outbox ORDER BY seq").fetchall()


def request(client_id: str, request_id: str = "", *, message=pb.CreateOrderRequest, **items: int):
    return message(client_id=client_id, request_id=request_id,
                   items=[pb.OrderItemInput(product_id=p, quantity=q) for p, q in items.items()])


def seed_request(client_id: str, request_id: str = "", **items: int) -> pb.SeedCreateOrderRequest:
    return request(client_id, request_id, message=pb.SeedCreateOrderRequest, **items)


# -- the servicer, called directly

async def test_seed_create_reserves_stores_and_announces(servicer, store, mesh):
    reply = await servicer.SeedCreateOrder(seed_request("seed-client", "r-1", p1=2, p2=1), None)
    order = reply.order
    assert order.status == Status.PENDING and order.client_id == "seed-client" and order.user_id == ""
    assert [(i.product_id, i.quantity, i.line_total.amount_minor) for i in order.items] == [
        ("p1", 2, 300), ("p2", 1, 2999)]
    assert order.total.currency_code == "USD" and order.total.amount_minor == 3299
    assert order.payment_due_at.ToSeconds() - order.created_at.ToSeconds() == 7 * 60
    assert mesh.reserved == [(order.id, [("p1", 2), ("p2", 1)])]
    assert [t for _, t in outbox(store)] == ["orders.order.created"]
    assert (await servicer.SeedGetOrder(pb.SeedGetOrderRequest(order_id=order.id), None)).order == order

    again = await servicer.SeedCreateOrder(seed_request("seed-client", "r-1", p1=2, p2=1), None)
    assert again.order == order and len(mesh.reserved) == 1  # the same request: the same order, once


async def test_create_checks_the_client_and_products(servicer, mesh):
    with pytest.raises(InvalidArgument) as info:
        await servicer.SeedCreateOrder(seed_request("nobody", p1=1, ghost=1), None)
    assert "client_id" in info.value.message and "items[1].product_id" in info.value.message
    with signed_in("bob"), pytest.raises(PermissionDenied):
        await servicer.CreateOrder(request("ada-client", p1=1), None)
    with pytest.raises(InvalidArgument):  # a user's client is not on the seed shop's routes
        await servicer.SeedCreateOrder(seed_request("ada-client", p1=1), None)
    assert mesh.reserved == []


async def test_a_user_cancels_their_own_order_only(servicer, store):
    with signed_in("ada"):
        order = (await servicer.CreateOrder(request("ada-client", p1=1), None)).order
    assert order.user_id == "ada"
    with signed_in("bob"), pytest.raises(PermissionDenied):
        await servicer.CancelOrder(pb.CancelOrderRequest(order_id=order.id), None)
    with signed_in("ada"):
        cancelled = (await servicer.CancelOrder(pb.CancelOrderRequest(order_id=order.id, reason="oops"),
                                                None)).order
        assert cancelled.status == Status.CANCELLED and cancelled.history[-1].reason == "oops"
        again = (await servicer.CancelOrder(pb.CancelOrderRequest(order_id=order.id), None)).order
    assert again == cancelled  # already cancelled: nothing changes
    assert [t for _, t in outbox(store)] == ["orders.order.created", "orders.order.cancelled"]
    with pytest.raises(NotFound):  # a user's order is not the seed shop's
        await servicer.SeedGetOrder(pb.SeedGetOrderRequest(order_id=order.id), None)


async def test_watch_past_the_latest_sequence_is_out_of_range(servicer):
    with signed_in("ada"):
        order = (await servicer.CreateOrder(request("ada-client", p1=1), None)).order
        with pytest.raises(OutOfRange):
            async for _ in servicer.WatchOrder(pb.WatchOrderRequest(order_id=order.id, resume_from=5), None):
                pass


async def test_watch_replays_a_finished_order_and_ends(servicer, store):
    with signed_in("ada"):
        order = (await servicer.CreateOrder(request("ada-client", p1=1), None)).order
        await servicer.CancelOrder(pb.CancelOrderRequest(order_id=order.id), None)
        seen = [m async for m in servicer.WatchOrder(pb.WatchOrderRequest(order_id=order.id), None)]
    assert [(m.sequence, m.order.status) for m in seen] == [(1, Status.PENDING), (2, Status.CANCELLED)]


# -- a payment consumer with a ledger and a store: no servicer, no gRPC

async def pending(store, due_in=timedelta(minutes=5)) -> domain.Order:
    order = domain.place(str(uuid.uuid4()), "c1", "", [("p1", 2)], PRODUCTS, domain.now(), due_in)
    await store.create(order, created_event(order, ""))
    return order


async def test_a_payment_outcome_applies_once(store):
    ledger = OrderLedger(store)
    order = await pending(store)
    event = new_envelope("payments.payment.succeeded", "payments", order.id,
                         payments_pb2.PaymentSucceeded(payment_id="pay-1", order_id=order.id))
    consumer = PaymentOutcomes(ledger)
    await consumer.handle(event)
    first = await store.get(order.id)
    assert first.status is Status.PAID and first.payment_id == "pay-1"
    assert first.history[-1].event_id == event.id
    paid_events = {i for i, t in outbox(store) if t == "orders.order.paid"}
    assert len(paid_events) == 1

    await consumer.handle(event)  # redelivered
    assert await store.get(order.id) == first  # nothing changed
    # A redelivery of the change's cause queues its event again (the recovery of a write interrupted
    # before the outbox), under the same id, which consumers dedupe: no new event, no new change.
    assert {i for i, t in outbox(store) if t == "orders.order.paid"} == paid_events


async def test_a_late_outcome_changes_a_final_order_no_more(store):
    ledger = OrderLedger(store)
    order = await pending(store)
    consumer = PaymentOutcomes(ledger)
    await consumer.handle(new_envelope("payments.payment.failed", "payments", order.id,
                                       payments_pb2.PaymentFailed(payment_id="p", order_id=order.id,
                                                                  reason="card_declined")))
    failed = await store.get(order.id)
    assert failed.status is Status.PAYMENT_FAILED
    await consumer.handle(new_envelope("payments.payment.succeeded", "payments", order.id,
                                       payments_pb2.PaymentSucceeded(payment_id="p", order_id=order.id)))
    assert await store.get(order.id) == failed


async def test_a_charge_after_cancelling_is_attached_then_refunded(store):
    ledger = OrderLedger(store)
    order = await pending(store)
    await ledger.change(order.id, lambda o: domain.cancel(o, "", domain.now()))
    consumer = PaymentOutcomes(ledger)
    await consumer.handle(new_envelope("payments.payment.succeeded", "payments", order.id,
                                       payments_pb2.PaymentSucceeded(payment_id="late", order_id=order.id)))
    got = await store.get(order.id)
    assert got.status is Status.CANCELLED and got.payment_id == "late"
    await consumer.handle(new_envelope("payments.payment.refunded", "payments", order.id,
                                       payments_pb2.PaymentRefunded(payment_id="late", order_id=order.id)))
    assert (await store.get(order.id)).status is Status.REFUNDED


async def test_the_ledger_feeds_watchers(store):
    ledger = OrderLedger(store, wake=lambda: woken.append(1))
    woken: list[int] = []
    order = await pending(store)
    ledger.log.seed(order.id, order.last_sequence)
    after = await ledger.change(order.id, lambda o: domain.cancel(o, "", domain.now()))
    assert woken and after.status is Status.CANCELLED
    seen = [m async for _, m in ledger.log.subscribe(order.id, 1)]  # closed: a cancelled order is over
    assert [(m.sequence, m.order.status) for m in seen] == [(2, Status.CANCELLED)]
