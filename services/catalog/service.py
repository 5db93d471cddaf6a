"""The CatalogServicer (agora.catalog.v1.CatalogService): proto in, proto out; rules in domain.py,
storage behind store.py."""

from __future__ import annotations

import logging

import grpc
from agora.catalog.v1 import catalog_pb2 as pb
from agora.catalog.v1 import catalog_pb2_grpc
from agora.customers.v1 import customers_pb2, customers_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from services.catalog import domain
from services.catalog.consumers import ProductChanges, StockConsumer
from services.catalog.domain import (
    Product,
    ProductMissing,
    Reservation,
    ReservationConflict,
    ReservationReleased,
    StockChange,
    StockShort,
    VersionMismatch,
)
from services.catalog.events import Reason, product_created, product_updated, stock_events
from services.catalog.store import CatalogStore, open_store
from services.catalog.wire import from_proto, reservation_proto, snapshot, to_proto
from services.kit import paging
from services.kit.auth import is_internal, owner_or_internal, signed_in_caller
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from services.kit.health import bus_probe
from services.kit.interceptors import remaining
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.streams import SnapshotFeed

log = logging.getLogger("agora.catalog")


class NotEnoughStock(FailedPrecondition):
    """FAILED_PRECONDITION whose PreconditionFailure names every product short of stock."""

    def __init__(self, shortages: dict[str, tuple[int, int]]) -> None:
        text = "; ".join(f"product {pid!r}: {want} wanted, {have} available"
                         for pid, (want, have) in shortages.items())
        super().__init__(f"not enough stock: {text}")
        self.shortages = shortages

    def details(self):
        return [_pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="STOCK", subject=f"products/{pid}", description=f"{want} wanted, {have} available")
            for pid, (want, have) in self.shortages.items()
        ]))]


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


class SellerDirectory:
    """Asks CustomerService whether a seller exists (with the caller's remaining deadline)."""

    def __init__(self, channel) -> None:
        self.stub = customers_pb2_grpc.CustomerServiceStub(channel)

    async def exists(self, seller_id: str) -> bool:
        try:
            await self.stub.GetSeller(customers_pb2.GetSellerRequest(seller_id=seller_id),
                                      timeout=remaining(5.0))
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return False
            raise Unavailable(f"cannot check the seller with CustomerService: {exc.code().name}") from None

    async def owner(self, seller_id: str) -> str | None:
        """The user id the seller belongs to ('' for a seller registered without a session), or
        None when there is no such seller."""
        try:
            reply = await self.stub.GetSeller(customers_pb2.GetSellerRequest(seller_id=seller_id),
                                              timeout=remaining(5.0))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise Unavailable(f"cannot check the seller with CustomerService: {exc.code().name}") from None
        return reply.seller.user_id


class Stock:
    """Reservations and releases, shared by the RPCs and the event handlers."""

    def __init__(self, store: CatalogStore, on_change) -> None:
        self.store = store
        self.on_change = on_change  # (products) -> None: feeds watchers, wakes the relay

    async def reserve(self, order_id: str, items: list[tuple[str, int]]) -> Reservation:
        if not order_id.strip():
            raise InvalidArgument.field("order_id", "required")
        wanted = domain.reservation_items(items)
        changed: list[StockChange] = []

        def events_for(changes):
            changed[:] = changes
            return stock_events(changes, Reason.STOCK_CHANGE_REASON_RESERVED, order_id)

        try:
            reservation = await self.store.reserve(order_id, wanted, domain.now(), events_for)
        except ProductMissing as exc:
            raise NotFound.of("product", exc.product_id) from None
        except StockShort as exc:
            raise NotEnoughStock(exc.shortages) from None
        except ReservationReleased:
            raise FailedPrecondition(f"the reservation of order {order_id!r} was already released") from None
        except ReservationConflict:
            raise AlreadyExists(
                f"order {order_id!r} already holds a reservation with different items") from None
        self.on_change([c.after for c in changed])
        return reservation

    async def release(self, order_id: str, reason: str) -> Reservation:
        if not order_id.strip():
            raise InvalidArgument.field("order_id", "required")
        changed: list[StockChange] = []

        def events_for(changes):
            changed[:] = changes
            return stock_events(changes, Reason.STOCK_CHANGE_REASON_RELEASED, order_id)

        reservation = await self.store.release(order_id, reason, domain.now(), events_for)
        self.on_change([c.after for c in changed])
        return reservation


class CatalogServicer(catalog_pb2_grpc.CatalogServiceServicer):
    def __init__(self, store: CatalogStore, sellers: SellerDirectory, *, wake=lambda: None,
                 feed: SnapshotFeed | None = None) -> None:
        self.store = store
        self.sellers = sellers
        self.wake = wake
        self.feed: SnapshotFeed[str, pb.WatchProductResponse] = feed or SnapshotFeed(name="catalog",
                                                                                     min_interval=0.05)
        self.stock = Stock(store, self.changed)

    def changed(self, products: list[Product]) -> None:
        """After a commit: wake the outbox relay, show the new snapshots to watchers."""
        self.wake()
        for p in products:
            self.observe(p)

    def observe(self, p: Product) -> None:
        """A product as some process (this one, or another replica via the change stream) left it."""
        latest = self.feed.latest(p.id)
        if latest is None and not self.feed.subscribers(p.id):
            return  # nobody watches it; WatchProduct reads the store first
        if latest is None or p.version > latest.sequence:
            self.feed.publish(p.id, snapshot(p))

    async def _product(self, product_id: str) -> Product:
        if not product_id.strip():
            raise InvalidArgument.field("product_id", "required")
        found = await self.store.get(product_id.strip())
        if found is None:
            raise NotFound.of("product", product_id)
        return found

    async def _check_seller(self, seller_id: str, context) -> None:
        """A product belongs to its seller's user: only that user (or an internal caller) writes it.
        A seller registered without a session (the seed shop's way) belongs to nobody: its products
        are changed by internal callers only."""
        if is_internal(context):
            return
        who = owner_or_internal(context)
        owner = await self.sellers.owner(seller_id)
        if owner is None or owner != who.user_id:
            raise PermissionDenied("this product belongs to another seller's user")

    async def CreateProduct(self, request, context):
        product = domain.new_product(from_proto(request.product))
        owner = await self.sellers.owner(product.seller_id)
        if owner is None:
            raise InvalidArgument.field("product.seller_id",
                                        f"no seller {product.seller_id!r} in CustomerService")
        if owner and not is_internal(context):
            who = signed_in_caller()
            if who is None:
                owner_or_internal(context)  # UNAUTHENTICATED: sign in as the seller's user
            if who.user_id != owner:
                raise PermissionDenied("this seller belongs to another user")
        await self.store.create(product, product_created(product))
        self.wake()
        return pb.CreateProductResponse(product=to_proto(product))

    async def GetProduct(self, request, context):
        return pb.GetProductResponse(product=to_proto(await self._product(request.product_id)))

    async def UpdateProduct(self, request, context):
        given = from_proto(request.product)
        for attempt in range(10):
            current = await self._product(request.product_id)
            if attempt == 0:
                await self._check_seller(current.seller_id, context)
            if request.expected_version and request.expected_version != current.version:
                raise Aborted(
                    f"product is at version {current.version}, not {request.expected_version}; re-read")
            updated, changed = domain.apply_update(current, given, list(request.update_mask.paths))
            if not changed:
                return pb.UpdateProductResponse(product=to_proto(current))
            envelopes = []
            details = [f for f in changed if f != "stock"]
            if details:
                envelopes.append(product_updated(current, updated, details))
            if "stock" in changed:
                envelopes += stock_events([StockChange(current, updated)],
                                          Reason.STOCK_CHANGE_REASON_ADJUSTED)
            try:
                await self.store.replace(updated, current.version, envelopes)
            except VersionMismatch:
                if request.expected_version:
                    raise Aborted("the product changed meanwhile; re-read and retry") from None
                continue  # a stock reservation moved the version: apply the update again on top of it
            except ProductMissing:
                raise NotFound.of("product", request.product_id) from None
            self.changed([updated])
            return pb.UpdateProductResponse(product=to_proto(updated))
        raise Aborted("the product kept changing; retry")

    async def ListProducts(self, request, context):
        size = paging.page_size(request.page_size)
        parts = (request.seller_id, request.category, request.query)
        offset = paging.decode_token(request.page_token, *parts, kind=paging.offset) or 0
        found = await self.store.list(request.seller_id, request.category, request.query, offset, size + 1)
        token = paging.encode_token(offset + size, *parts) if len(found) > size else ""
        return pb.ListProductsResponse(products=[to_proto(p) for p in found[:size]], next_page_token=token)

    async def AdjustStock(self, request, context):
        if not request.product_id.strip():
            raise InvalidArgument.field("product_id", "required")
        await self._check_seller((await self._product(request.product_id)).seller_id, context)
        domain.check_adjustment(request.delta)
        changed: list[StockChange] = []

        def events_for(changes):
            changed[:] = changes
            return stock_events(changes, Reason.STOCK_CHANGE_REASON_ADJUSTED)

        try:
            product = await self.store.adjust(request.product_id.strip(), request.delta, request.request_id,
                                              request.reason, domain.now(), events_for)
        except ProductMissing:
            raise NotFound.of("product", request.product_id) from None
        except StockShort as exc:
            raise NotEnoughStock(exc.shortages) from None
        self.changed([c.after for c in changed])
        return pb.AdjustStockResponse(product=to_proto(product))

    async def ReserveStock(self, request, context):  # ACCESS_INTERNAL: the kit admits only the mesh
        items = [(i.product_id, i.quantity) for i in request.items]
        reservation = await self.stock.reserve(request.order_id, items)
        return pb.ReserveStockResponse(reservation=reservation_proto(reservation))

    async def ReleaseStock(self, request, context):  # ACCESS_INTERNAL
        reservation = await self.stock.release(request.order_id, request.reason or "released")
        return pb.ReleaseStockResponse(reservation=reservation_proto(reservation))

    async def WatchProduct(self, request, context):
        product = await self._product(request.product_id)
        initial = snapshot(product)
        latest = self.feed.latest(product.id)
        if latest is None or latest.sequence < initial.sequence:
            self.feed.publish(product.id, initial)
        async for value in self.feed.subscribe(product.id):
            yield value


async def build(runtime) -> ServiceSpec:
    store = open_store(runtime.settings)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store)
    servicer = CatalogServicer(store, SellerDirectory(runtime.channel("customers")), wake=relay.wake)
    return ServiceSpec(
        domain=DOMAINS["catalog"],
        register=lambda server: catalog_pb2_grpc.add_CatalogServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store],
        relay=relay,
        workers=[ProductChanges(store, servicer.observe)],  # follows the store once it has started
        consumers=[StockConsumer(servicer.stock)],
        bus=bus,
        sessions=runtime.sessions(),
    )
