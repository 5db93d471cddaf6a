"""The OrderServicer (agora.orders.v1.OrderService): proto in, proto out; rules in domain.py,
storage behind store.py, status changes through ledger.py.

CreateOrder checks the client (CustomerService) and products (CatalogService) and reserves stock
(CatalogService.ReserveStock, keyed by the order id) over gRPC with the caller's deadline."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import grpc
from agora.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from agora.customers.v1 import customers_pb2, customers_pb2_grpc
from agora.orders.v1 import orders_pb2 as pb
from agora.orders.v1 import orders_pb2_grpc
from grpc_status import rpc_status

from services.kit import paging
from services.kit.auth import owner_or_internal, require_user
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import (
    DomainError,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unavailable,
    enum_value,
)
from services.kit.health import bus_probe
from services.kit.interceptors import remaining
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.wire import from_money
from services.orders import consumers, domain
from services.orders.clocks import PaymentTimeouts
from services.orders.consumers import PaymentOutcomes
from services.orders.domain import Order, ProductInfo, Status
from services.orders.events import created_event
from services.orders.ledger import OrderLedger
from services.orders.store import open_store
from services.orders.wire import to_proto, watch_response

log = logging.getLogger("agora.orders")
CALL_TIMEOUT = 5.0  # seconds for a downstream call when the caller set no deadline


class Upstream(DomainError):
    """A dependency's own answer (code, message, details), passed on to our caller unchanged."""

    def __init__(self, exc: grpc.aio.AioRpcError) -> None:
        super().__init__(exc.details() or exc.code().name)
        self.code = exc.code()
        self.status = rpc_status.from_call(exc)

    def details(self):
        return list(self.status.details) if self.status else []


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
        return ProductInfo(p.id, p.name, p.seller_id, from_money(p.price))

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> None:
        request = catalog_pb2.ReserveStockRequest(
            order_id=order_id,
            items=[catalog_pb2.ReservationItem(product_id=p, quantity=q) for p, q in items])
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


class OrderServicer(orders_pb2_grpc.OrderServiceServicer):
    def __init__(self, ledger: OrderLedger, mesh: Mesh, *,
                 payment_timeout: timedelta = domain.PAYMENT_TIMEOUT) -> None:
        self.ledger = ledger
        self.store = ledger.store
        self.mesh = mesh
        self.payment_timeout = payment_timeout

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
                raise PermissionDenied(
                    "this client belongs to another user: order for a client you registered")
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
        self.ledger.announce(order)
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
        after = await self.ledger.change(
            order.id, lambda o: domain.cancel(o, request.reason.strip(), domain.now()),
            check=lambda o: self._check_access(o, context))
        return pb.CancelOrderResponse(order=to_proto(after))

    async def WatchOrder(self, request, context):
        order = await self._order(request.order_id, context)
        last = order.last_sequence
        if request.resume_from > last:
            raise OutOfRange(f"resume_from {request.resume_from} is beyond the latest sequence {last}")

        async def replay(after: int, upto: int):
            stored = await self.store.get(order.id)
            return [(c.sequence, watch_response(domain.as_of(stored, c.sequence), c))
                    for c in stored.history if after < c.sequence <= upto]

        if order.is_over(paid_before=bool(order.payment_id)):
            for _, item in await replay(request.resume_from, last):
                yield item
            return
        self.ledger.log.seed(order.id, last)
        async for _, item in self.ledger.log.subscribe(order.id, request.resume_from, replay=replay):
            yield item


async def build(runtime, *, payment_timeout: timedelta | None = None, sweep_interval: float = 5.0,
                group: str | None = None) -> ServiceSpec:
    store = open_store(runtime.settings)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store)
    ledger = OrderLedger(store, wake=relay.wake)
    mesh = Mesh(runtime.channel("customers"), runtime.channel("catalog"))
    timeout = payment_timeout or timedelta(seconds=runtime.settings.orders_payment_timeout)
    servicer = OrderServicer(ledger, mesh, payment_timeout=timeout)
    return ServiceSpec(
        domain=DOMAINS["orders"],
        register=lambda server: orders_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store],
        relay=relay,
        workers=[PaymentTimeouts(ledger, interval=sweep_interval)],
        consumers=[PaymentOutcomes(ledger, group or consumers.GROUP)],
        bus=bus,
        sessions=runtime.sessions(),
    )
