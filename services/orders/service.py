"""The OrderService servicer: proto in, proto out; rules in domain.py, storage behind store.py.

CreateOrder checks the client (CustomerService) and products (CatalogService) and reserves stock
(CatalogService.ReserveStock, keyed by the order id) over gRPC with the caller's deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar

import grpc
from agora.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from agora.common.v1.money_pb2 import Money as MoneyPb
from agora.customers.v1 import customers_pb2, customers_pb2_grpc
from agora.events.v1 import orders_pb2 as events
from agora.orders.v1 import orders_pb2 as pb
from agora.orders.v1 import orders_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_status import rpc_status

from services.kit import paging
from services.kit.auth import owner_or_internal, require_user
from services.kit.bus import new_envelope
from services.kit.errors import (
    Aborted,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
    enum_value,
)
from services.kit.health import bus_probe
from services.kit.interceptors import remaining
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.streams import SequencedLog
from services.orders import domain, handlers
from services.orders.domain import Money, Order, ProductInfo, Status
from services.orders.handlers import PaymentOutcomes, PaymentTimeouts
from services.orders.store import OrderStore, open_store

log = logging.getLogger("agora.orders")
CALL_TIMEOUT = 5.0  # seconds for a downstream call when the caller set no deadline


class OutOfRange(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.OUT_OF_RANGE


class Upstream(DomainError):
    """A dependency's own answer (code, message, details), passed on to our caller unchanged."""

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        super().__init__(exc.details() or exc.code().name)
        self.code = exc.code()
        self.status = rpc_status.from_call(exc)

    def details(self):
        return list(self.status.details) if self.status else []


def _ts(value) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value)
    return ts


def _money(m: Money) -> MoneyPb:
    return MoneyPb(currency_code=m.currency_code, amount_minor=m.amount_minor)


def change_proto(c: domain.StatusChange) -> pb.StatusChange:
    return pb.StatusChange(sequence=c.sequence, status=int(c.status), at=_ts(c.at), reason=c.reason,
                           event_id=c.event_id)


def to_proto(o: Order) -> pb.Order:
    return pb.Order(
        id=o.id, client_id=o.client_id, status=int(o.status), user_id=o.user_id, payment_id=o.payment_id,
        items=[pb.LineItem(product_id=i.product_id, quantity=i.quantity, unit_price=_money(i.unit_price),
                           line_total=_money(i.total), product_name=i.product_name, seller_id=i.seller_id)
               for i in o.items],
        total=_money(o.total), history=[change_proto(c) for c in o.history], payment_due_at=_ts(o.payment_due_at),
        created_at=_ts(o.created_at), updated_at=_ts(o.updated_at),
    )


def _lines(o: Order) -> list[events.OrderLine]:
    return [events.OrderLine(product_id=i.product_id, quantity=i.quantity, unit_price=_money(i.unit_price),
                             line_total=_money(i.total), product_name=i.product_name, seller_id=i.seller_id)
            for i in o.items]


def created_event(o: Order, card_token: str):
    return new_envelope("orders.order.created", "orders", o.id, events.OrderCreated(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, items=_lines(o), total=_money(o.total),
        payment_card_token=card_token or "tok_ok", payment_due_at=_ts(o.payment_due_at),
        created_at=_ts(o.created_at)), occurred_at=_ts(o.created_at))


def cancelled_event(o: Order, was_paid: bool):
    change = o.history[-1]
    return new_envelope("orders.order.cancelled", "orders", o.id, events.OrderCancelled(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id, was_paid=was_paid,
        reason=change.reason, items=_lines(o), total=_money(o.total), cancelled_at=_ts(change.at)),
        occurred_at=_ts(change.at), id=domain.transition_event_id(o))


def paid_event(o: Order):
    change = o.history[-1]
    return new_envelope("orders.order.paid", "orders", o.id, events.OrderPaid(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id, amount=_money(o.total),
        paid_at=_ts(change.at)), occurred_at=_ts(change.at), id=domain.transition_event_id(o))


def failed_event(o: Order, reason: str):
    change = o.history[-1]
    return new_envelope("orders.order.failed", "orders", o.id, events.OrderFailed(
        order_id=o.id, client_id=o.client_id, user_id=o.user_id, payment_id=o.payment_id, reason=reason,
        items=_lines(o), total=_money(o.total), failed_at=_ts(change.at)),
        occurred_at=_ts(change.at), id=domain.transition_event_id(o))


def event_for(before: Order, after: Order, reason: str = ""):
    """The event a status change publishes (None for REFUNDED: payments already announced it)."""
    if after.status is Status.PAID:
        return paid_event(after)
    if after.status is Status.PAYMENT_FAILED:
        return failed_event(after, reason or after.history[-1].reason)
    if after.status is Status.CANCELLED:
        return cancelled_event(after, before.status is Status.PAID)
    return None


class Mesh:
    """The other domains CreateOrder asks, over gRPC, within the caller's deadline."""

    def __init__(self, customers_channel, catalog_channel) -> None:
        self.customers = customers_pb2_grpc.CustomerServiceStub(customers_channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(catalog_channel)

    async def client_owner(self, client_id: str) -> str | None:
        """The user id the client belongs to ('' for nobody, the seed shop's); None: no such client."""
        try:
            reply = await self.customers.GetClient(customers_pb2.GetClientRequest(client_id=client_id),
                                                   timeout=remaining(CALL_TIMEOUT))
            return reply.client.user_id
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise _unavailable("CustomerService", exc) from None

    async def product(self, product_id: str) -> ProductInfo | None:
        try:
            reply = await self.catalog.GetProduct(catalog_pb2.GetProductRequest(product_id=product_id),
                                                  timeout=remaining(CALL_TIMEOUT))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise _unavailable("CatalogService", exc) from None
        p = reply.product
        return ProductInfo(p.id, p.name, p.seller_id, Money(p.price.currency_code, p.price.amount_minor))

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> None:
        request = catalog_pb2.ReserveStockRequest(
            order_id=order_id, items=[catalog_pb2.ReservationItem(product_id=p, quantity=q) for p, q in items])
        try:
            await self.catalog.ReserveStock(request, timeout=remaining(CALL_TIMEOUT))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise _unavailable("CatalogService", exc) from None
            raise Upstream(exc) from None  # FAILED_PRECONDITION (short of stock) with catalog's details

    async def release(self, order_id: str, reason: str) -> None:
        await self.catalog.ReleaseStock(catalog_pb2.ReleaseStockRequest(order_id=order_id, reason=reason),
                                        timeout=CALL_TIMEOUT)


def _unavailable(service: str, exc: grpc.aio.AioRpcError) -> DomainError:
    if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Upstream(exc)
    return Unavailable(f"{service} did not answer ({exc.code().name}); nothing was reserved or stored; retry")


class OrderService(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, store: OrderStore, mesh: Mesh, *, wake=lambda: None, capacity: int = 256,
                 payment_timeout: timedelta = domain.PAYMENT_TIMEOUT) -> None:
        self.store = store
        self.mesh = mesh
        self.wake = wake
        self.payment_timeout = payment_timeout
        self.log: SequencedLog[str, pb.WatchOrderResponse] = SequencedLog(name="orders", capacity=capacity)

    async def change(self, order_id: str, decide: Callable[[Order], Order | None], *, reason: str = "",
                     cause: str = "", check=None) -> Order | None:
        """Read, decide, compare-and-set, announce; re-read and decide again when another writer won.

        `cause` is the id of the event that asks for the change: if the order's latest change
        already came from it (a redelivery after an interrupted write), its event is queued again."""
        for _ in range(8):
            order = await self.store.get(order_id)
            if order is None:
                return None
            if check is not None:
                check(order)
            after = decide(order)
            if after is None:
                if domain.caused_by(order, cause) and len(order.history) > 1:
                    previous = _as_of(order, order.history[-2].sequence)
                    event = event_for(previous, order, reason)
                    if event is not None:
                        await self.store.emit(event)
                        self.wake()
                return order
            if await self.store.transition(after, event_for(order, after, reason), expect=order.status):
                self._announce(after)
                return after
        raise Aborted(f"order {order_id} kept changing under this request; retry")

    def _announce(self, order: Order) -> None:
        """After a commit: wake the relay, feed WatchOrder."""
        self.wake()
        change = order.history[-1]
        self.log.append(order.id, change.sequence,
                        pb.WatchOrderResponse(sequence=change.sequence, change=change_proto(change),
                                              order=to_proto(order)))
        if order.is_over(paid_before=bool(order.payment_id)):
            self.log.close(order.id)

    @staticmethod
    def _check_access(order: Order, context=None) -> None:
        who = owner_or_internal(context)
        if who and order.user_id != who.user_id:
            raise PermissionDenied("this order belongs to another user")

    async def _order(self, order_id: str, context=None) -> Order:
        if not order_id.strip():
            raise InvalidArgument.field("order_id", "required")
        order = await self.store.get(order_id.strip())
        if order is None:
            raise NotFound.of("order", order_id)
        self._check_access(order, context)
        return order

    async def CreateOrder(self, request, context):
        return pb.CreateOrderResponse(order=to_proto(await self._place(request, require_user().user_id)))

    async def _place(self, request, owner: str) -> Order:
        """CreateOrder's work. `owner`: the user the order will belong to, who must own the client;
        '' = nobody: the seed shop's order, for one of its clients."""
        items = [(i.product_id.strip(), i.quantity) for i in request.items]
        client_id = request.client_id.strip()
        domain.check_request(client_id, items)
        order_id = domain.order_id_for(client_id, request.request_id)
        if request.request_id:
            earlier = await self.store.get(order_id)
            if earlier is not None:
                if earlier.user_id != owner:
                    raise PermissionDenied("this request_id names another user's order")
                return earlier
        distinct = list(dict.fromkeys(p for p, _ in items))
        client_of, *found = await asyncio.gather(self.mesh.client_owner(client_id),
                                                 *(self.mesh.product(p) for p in distinct))
        if client_of is None or (owner == "" and client_of != ""):
            # no such client, or (on the seed shop's routes) a client a user registered: not shown there
            problems = {"client_id": f"no client {client_id!r} in CustomerService"}
        else:
            problems = {}
            if owner and client_of != owner:
                raise PermissionDenied("this client belongs to another user: order for a client you registered")
        products = dict(zip(distinct, found))
        for i, (pid, _) in enumerate(items):
            if products[pid] is None:
                problems[f"items[{i}].product_id"] = f"no product {pid!r} in the catalog"
        if problems:
            raise InvalidArgument.fields(problems)
        order = domain.place(order_id, client_id, owner, items, products, domain.now(), self.payment_timeout)
        await self.mesh.reserve(order.id, items)
        try:
            await self.store.create(order, created_event(order, request.card_token))
        except Exception:
            # Not stored: give the stock back (best effort; catalog's release is idempotent).
            try:
                await self.mesh.release(order.id, "order not stored")
            except grpc.aio.AioRpcError as exc:
                log.warning("could not release the stock of unstored order %s: %s", order.id, exc.code().name)
            raise
        self._announce(order)
        return order

    async def GetOrder(self, request, context):
        return pb.GetOrderResponse(order=to_proto(await self._order(request.order_id, context)))

    async def ListOrdersByClient(self, request, context):
        orders, token = await self._list_by_client(request, "by-client")
        for o in orders:
            self._check_access(o, context)
        return pb.ListOrdersByClientResponse(orders=[to_proto(o) for o in orders], next_page_token=token)

    async def _list_by_client(self, request, scope: str) -> tuple[list[Order], str]:
        if not request.client_id.strip():
            raise InvalidArgument.field("client_id", "required")
        size = paging.page_size(request.page_size)
        cursor = paging.decode_token(request.page_token, scope, request.client_id, kind=str) or ""
        orders, after = await self.store.list_by_client(request.client_id.strip(), cursor, size)
        return orders, paging.encode_token(after, scope, request.client_id) if after else ""

    async def ListOrders(self, request, context):
        who = owner_or_internal(context)  # a user lists their own orders, an internal caller every order
        orders, token = await self._list_all(request, who.user_id if who else None, "all")
        return pb.ListOrdersResponse(orders=[to_proto(o) for o in orders], next_page_token=token)

    async def _list_all(self, request, owner: str | None, scope: str) -> tuple[list[Order], str]:
        """A page of every order, keeping those of `owner` ('' = nobody's; None = all). The store
        pages over every order, so a page may hold fewer than page_size (AIP-158 allows it)."""
        size = paging.page_size(request.page_size)
        status = enum_value(Status, request.status, "status") if request.status else None
        cursor = paging.decode_token(request.page_token, scope, str(request.status), kind=str) or ""
        orders, after = await self.store.list_all(status, cursor, size)
        if owner is not None:
            orders = [o for o in orders if o.user_id == owner]
        return orders, paging.encode_token(after, scope, str(request.status)) if after else ""

    # -- the seed shop's open routes: its orders belong to nobody, and no one else's show there

    async def SeedCreateOrder(self, request, context):
        return pb.SeedCreateOrderResponse(order=to_proto(await self._place(request, "")))

    async def SeedGetOrder(self, request, context):
        if not request.order_id.strip():
            raise InvalidArgument.field("order_id", "required")
        order = await self.store.get(request.order_id.strip())
        if order is None or order.user_id:
            raise NotFound.of("order", request.order_id)
        return pb.SeedGetOrderResponse(order=to_proto(order))

    async def SeedListOrdersByClient(self, request, context):
        orders, token = await self._list_by_client(request, "seed-by-client")
        return pb.SeedListOrdersByClientResponse(orders=[to_proto(o) for o in orders if not o.user_id],
                                                 next_page_token=token)

    async def SeedListOrders(self, request, context):
        orders, token = await self._list_all(request, "", "seed-all")
        return pb.SeedListOrdersResponse(orders=[to_proto(o) for o in orders], next_page_token=token)

    async def CancelOrder(self, request, context):
        order = await self._order(request.order_id, context)
        after = await self.change(order.id, lambda o: domain.cancel(o, request.reason.strip(), domain.now()),
                                  check=lambda o: self._check_access(o, context))
        return pb.CancelOrderResponse(order=to_proto(after))

    async def WatchOrder(self, request, context):
        order = await self._order(request.order_id, context)
        last = order.last_sequence
        if request.resume_from > last:
            raise OutOfRange(f"resume_from {request.resume_from} is beyond the latest sequence {last}")

        async def replay(after: int, upto: int):
            stored = await self.store.get(order.id)
            return [(c.sequence, pb.WatchOrderResponse(sequence=c.sequence, change=change_proto(c),
                                                       order=to_proto(_as_of(stored, c.sequence))))
                    for c in stored.history if after < c.sequence <= upto]

        if order.is_over(paid_before=bool(order.payment_id)):
            for _, item in await replay(request.resume_from, last):
                yield item
            return
        self.log.seed(order.id, last)
        async for _, item in self.log.subscribe(order.id, request.resume_from, replay=replay):
            yield item


def _as_of(order: Order, sequence: int) -> Order:
    """The order as it was right after history entry `sequence`."""
    history = tuple(c for c in order.history if c.sequence <= sequence)
    return dataclasses.replace(order, history=history, status=history[-1].status, updated_at=history[-1].at)


async def build(runtime, *, payment_timeout: timedelta | None = None, sweep_interval: float = 5.0,
                group: str | None = None) -> ServiceSpec:
    store = open_store(runtime.settings)
    await store.start()
    bus = await runtime.bus()
    relay = store.relay(bus)
    mesh = Mesh(runtime.channel("customers"), runtime.channel("catalog"))
    timeout = payment_timeout or timedelta(seconds=runtime.settings.orders_payment_timeout)
    servicer = OrderService(store, mesh, wake=relay.wake, payment_timeout=timeout)
    outcomes = PaymentOutcomes(servicer, group or handlers.GROUP)
    sweeper = PaymentTimeouts(servicer, interval=sweep_interval)
    subscriptions = []

    async def start() -> None:
        await relay.start()
        subscriptions.append(await outcomes.subscribe(bus))
        await sweeper.start()

    async def stop() -> None:
        await sweeper.stop()
        for subscription in subscriptions:
            await subscription.cancel()
        await relay.stop()
        await store.close()

    return ServiceSpec(
        domain=DOMAINS["orders"],
        register=lambda server: orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        on_start=[start],
        on_stop=[stop],
        sessions=runtime.sessions(),
    )
