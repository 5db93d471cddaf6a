"""The auctions gRPC servicer: create, get, list, bid, watch, and the seed's bidding WebSocket (BidStream)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

from agora.auctions.v1 import auctions_pb2 as pb
from agora.auctions.v1 import auctions_pb2_grpc
from agora.common.v1.money_pb2 import Money
from google.protobuf.duration_pb2 import Duration

from services.auctions import domain, events, wire
from services.auctions.clocks import AuctionCloser
from services.auctions.domain import CLOSED, Auction, AuctionRules, BidPlan
from services.auctions.live import BidFeed, LiveFrame
from services.auctions.store import AuctionStore, PlacedBid, open_store
from services.kit import auth, paging
from services.kit.auth import Caller
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import DomainError, InvalidArgument, NotFound, OutOfRange
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.wire import money_of, to_datetime

MAX_REQUEST_ID = 128
FIRST_FRAME_TIMEOUT = 30.0  # a BidStream that never names its auction is ended, not kept forever
OUTBOUND_BUFFER = 64


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AuctionServicer(auctions_pb2_grpc.AuctionServiceServicer):
    """`wake` tells the outbox relay there is something to publish; `closer` is woken when an auction
    is created (its end may be sooner than the one the closer waits for)."""

    def __init__(self, store: AuctionStore, rules: AuctionRules, feed: BidFeed, *,
                 wake: Callable[[], None] = lambda: None, closer: AuctionCloser | None = None) -> None:
        self.store = store
        self.rules = rules
        self.feed = feed
        self.wake = wake
        self.closer = closer

    async def _auction(self, auction_id: str, field: str = "auction_id") -> Auction:
        if not auction_id:
            raise InvalidArgument.field(field, "must name an auction")
        auction = await self.store.get_auction(auction_id)
        if auction is None:
            raise NotFound.of("auction", auction_id)
        return auction

    # unary

    async def CreateAuction(self, request: pb.CreateAuctionRequest, context) -> pb.CreateAuctionResponse:
        me = auth.require_user()
        now = _now()
        auction = domain.new_auction(
            auction_id=str(uuid.uuid4()), seller_id=me.user_id, seller_name=me.username,
            product_name=request.product_name, description=request.description,
            currency=request.starting_price.currency_code,
            starting_price=(request.starting_price.amount_minor
                            if request.HasField("starting_price") else None),
            increment_currency=request.min_increment.currency_code,
            min_increment=request.min_increment.amount_minor if request.HasField("min_increment") else None,
            auction_end=to_datetime(request.auction_end) if request.HasField("auction_end") else None,
            window=(request.anti_sniping_window.ToTimedelta()
                    if request.HasField("anti_sniping_window") else None),
            extension=(request.anti_sniping_extension.ToTimedelta()
                       if request.HasField("anti_sniping_extension") else None),
            now=now, rules=self.rules,
        )
        await self.store.create_auction(auction, events.auction_created(auction, now))
        self.wake()
        if self.closer is not None:
            self.closer.wake()
        return pb.CreateAuctionResponse(product_id=auction.id, auction=wire.auction_pb(auction))

    async def GetAuction(self, request: pb.GetAuctionRequest, context) -> pb.GetAuctionResponse:
        return pb.GetAuctionResponse(auction=wire.auction_pb(await self._auction(request.auction_id)))

    async def ListAuctions(self, request: pb.ListAuctionsRequest, context) -> pb.ListAuctionsResponse:
        size = paging.page_size(request.page_size)
        filters = ("auctions", str(request.status), request.seller_id)
        offset = paging.decode_token(request.page_token, *filters, kind=paging.offset) or 0
        if request.status not in (0, domain.OPEN, domain.CLOSED):
            raise InvalidArgument.field("status",
                                        "must be AUCTION_STATUS_OPEN, AUCTION_STATUS_CLOSED or unset")
        found = await self.store.list_auctions(request.status, request.seller_id, offset, size + 1)
        more = len(found) > size
        return pb.ListAuctionsResponse(
            auctions=[wire.auction_pb(a) for a in found[:size]],
            next_page_token=paging.encode_token(offset + size, *filters) if more else "")

    async def place(self, me: Caller, auction_id: str, amount: Money, request_id: str) -> PlacedBid:
        """PlaceBid's work, shared with BidStream."""
        if not auction_id:
            raise InvalidArgument.field("auction_id", "must name an auction")
        if len(request_id) > MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"must be at most {MAX_REQUEST_ID} characters")
        bid_id, now = str(uuid.uuid4()), _now()

        def decide(auction: Auction, lost_race: bool) -> BidPlan:
            return domain.place_bid(auction, bid_id=bid_id, bidder_id=me.user_id, bidder_name=me.username,
                                    currency=amount.currency_code, amount=amount.amount_minor, now=now,
                                    request_id=request_id, lost_race=lost_race)

        placed = await self.store.place_bid(auction_id, me.user_id, request_id, decide, events.bid_placed)
        if not placed.replayed:
            self.wake()
            await self.feed.advance(placed.auction, placed.bid)
        return placed

    async def PlaceBid(self, request: pb.PlaceBidRequest, context) -> pb.PlaceBidResponse:
        me = auth.require_user()
        if not request.HasField("amount"):
            raise InvalidArgument.field("amount", "must be given")
        placed = await self.place(me, request.auction_id, request.amount, request.request_id)
        return pb.PlaceBidResponse(bid=wire.bid_pb(placed.auction, placed.bid),
                                   auction=wire.auction_pb(placed.auction))

    async def ListBids(self, request: pb.ListBidsRequest, context) -> pb.ListBidsResponse:
        size = paging.page_size(request.page_size)
        filters = ("bids", request.auction_id)
        before = paging.decode_token(request.page_token, *filters, kind=paging.offset) or 0
        auction = await self._auction(request.auction_id)
        bids = await self.store.list_bids(auction.id, before, size)
        more = len(bids) == size and bids[-1].sequence > 1
        return pb.ListBidsResponse(
            bids=[wire.bid_pb(auction, b) for b in bids],
            next_page_token=paging.encode_token(bids[-1].sequence, *filters) if more else "")

    # streams

    async def _opening(self, auction: Auction, resume_from: int) -> tuple[bool, int]:
        """(send a snapshot first?, the sequence live frames start after)."""
        latest = auction.bid_count + (1 if auction.status == CLOSED else 0)
        if resume_from > latest:
            raise OutOfRange(
                f"resume_from {resume_from} is beyond auction {auction.id}'s latest sequence {latest}")
        return (resume_from == 0, auction.bid_count if resume_from == 0 else resume_from)

    async def WatchAuction(self, request: pb.WatchAuctionRequest,
                           context) -> AsyncIterator[pb.WatchAuctionResponse]:
        auction = await self._auction(request.auction_id)
        snapshot, after = await self._opening(auction, request.resume_from)
        if snapshot:
            yield pb.WatchAuctionResponse(sequence=auction.bid_count, snapshot=wire.auction_pb(auction))
        async for frame in self.feed.frames(auction, after):
            yield frame.watch

    async def BidStream(self, request_iterator, context) -> AsyncIterator[pb.BidStreamResponse]:
        frames_in = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(frames_in.__anext__(), FIRST_FRAME_TIMEOUT)
        except StopAsyncIteration:
            raise InvalidArgument.field("product_id", "the first frame must name the auction") from None
        except asyncio.TimeoutError:
            raise InvalidArgument.field(
                "product_id",
                f"no first frame naming the auction arrived within {FIRST_FRAME_TIMEOUT:g}s") from None
        auction = await self._auction(first.product_id, "product_id")
        snapshot, after = await self._opening(auction, first.resume_from)
        # One bounded queue carries, in order, live frames (from the pump) and this client's
        # rejections (from the reader); a full queue holds the pump back, and a pump that falls
        # too far behind the log is ended by it (RESOURCE_EXHAUSTED).
        out: asyncio.Queue[tuple[str, object]] = asyncio.Queue(maxsize=OUTBOUND_BUFFER)
        me = auth.signed_in_caller()  # watching needs no session; bidding does

        async def bid(frame: pb.BidStreamRequest) -> None:
            try:
                await self.place(me or auth.require_user(), auction.id, frame.amount, frame.request_id)
            except DomainError as exc:
                await out.put(("rejected", wire.rejection(frame, exc, auction)))

        async def read_frames() -> None:
            try:
                if first.HasField("amount"):
                    await bid(first)
                async for frame in frames_in:
                    if frame.product_id and frame.product_id != auction.id:
                        raise InvalidArgument.field("product_id", f"this stream is for auction {auction.id}")
                    if frame.HasField("amount"):
                        await bid(frame)
            except Exception as exc:  # noqa: BLE001 - handed to the stream, which ends with its status
                await out.put(("error", exc))
            # the client stopped sending: the stream goes on watching

        async def pump() -> None:
            try:
                async for frame in self.feed.frames(auction, after):
                    await out.put(("frame", frame))
                await out.put(("end", None))
            except Exception as exc:  # noqa: BLE001
                await out.put(("error", exc))

        if snapshot:
            yield pb.BidStreamResponse(sequence=auction.bid_count, snapshot=wire.auction_pb(auction))
        delivered = after
        tasks = [asyncio.ensure_future(read_frames()), asyncio.ensure_future(pump())]
        try:
            while True:
                kind, item = await out.get()
                if kind == "frame":
                    assert isinstance(item, LiveFrame)
                    delivered = item.sequence
                    yield item.stream
                    if item.final:
                        return
                elif kind == "rejected":
                    yield pb.BidStreamResponse(sequence=delivered, rejected=item)
                elif kind == "error":
                    raise item  # type: ignore[misc]
                else:
                    return
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- GoBid's own routes: the same auctions and bids, the seed's rules, words and frames

    async def SeedCreateProduct(self, request: pb.SeedCreateProductRequest,
                                context) -> pb.SeedCreateProductResponse:
        auth.require_user()
        end = to_datetime(request.auction_end) if request.HasField("auction_end") else None
        base = domain.validate_seed_product(request.product_name, request.description, request.baseprice, end,
                                            _now())
        created = await self.CreateAuction(pb.CreateAuctionRequest(
            product_name=request.product_name, description=request.description,
            starting_price=money_of(domain.SEED_CURRENCY, base),
            # The seed's rule is "more than the current price": one cent more, and no anti-sniping.
            min_increment=money_of(domain.SEED_CURRENCY, 1), auction_end=request.auction_end,
            anti_sniping_window=Duration(), anti_sniping_extension=Duration(),
        ), context)
        return pb.SeedCreateProductResponse(id=created.product_id)

    async def SeedSubscribe(self, request_iterator, context) -> AsyncIterator[pb.SeedSubscribeResponse]:
        frames_in = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(frames_in.__anext__(), FIRST_FRAME_TIMEOUT)
        except (StopAsyncIteration, asyncio.TimeoutError):
            raise InvalidArgument.field("product_id", "the first frame must name the product") from None
        me = auth.require_user()  # after the first frame: a frame that does not even parse is refused as such
        try:
            product_id = str(uuid.UUID(first.product_id))
        except ValueError:
            raise InvalidArgument.field("product_id", "invalid product id - must be a valid uuid") from None
        auction = await self._auction(product_id, "product_id")
        if auction.status == CLOSED:
            raise domain.AuctionClosed(auction)
        # Checked: the bridge may now complete the upgrade (the seed answers the errors above in HTTP).
        await context.send_initial_metadata((("x-agora-stream", "open"),))
        out: asyncio.Queue[pb.SeedSubscribeResponse | BaseException | None] = asyncio.Queue(
            maxsize=OUTBOUND_BUFFER)

        async def bid(frame: pb.SeedSubscribeRequest) -> pb.SeedSubscribeResponse:
            current = await self._auction(product_id, "product_id")
            minor = domain.minor_units(frame.amount, current.currency)
            if minor is None:
                return wire.seed_failed(
                    me, f"an amount has at most 2 decimal places (cents): {frame.amount!r} has more")
            if minor <= current.current_price:
                return wire.seed_failed(me, domain.SEED_BID_TOO_LOW)
            try:
                await self.place(me, product_id, money_of(current.currency, minor), "")
            except (domain.BidTooLow, domain.Outbid):
                return wire.seed_failed(me, domain.SEED_BID_TOO_LOW)
            except DomainError as exc:
                return wire.seed_failed(me, exc.message)
            return wire.seed_placed(me)

        async def read_frames() -> None:
            try:
                async for frame in frames_in:  # the URL's frame (the first) only subscribed
                    if frame.kind == pb.SEED_MESSAGE_KIND_UNSPECIFIED:
                        await out.put(await bid(frame))
            except Exception as exc:  # noqa: BLE001 - handed to the stream, which ends with its status
                await out.put(exc)

        async def pump() -> None:
            try:
                async for frame in self.feed.frames(auction, auction.bid_count):
                    event = frame.watch.WhichOneof("event")
                    if event == "bid" and frame.watch.bid.bid.bidder_id != me.user_id:
                        await out.put(wire.seed_new_bid(frame.watch.bid.bid))
                    elif event == "closed":
                        await out.put(wire.seed_finished())
                await out.put(None)
            except Exception as exc:  # noqa: BLE001
                await out.put(exc)

        tasks = [asyncio.ensure_future(read_frames()), asyncio.ensure_future(pump())]
        try:
            while True:
                item = await out.get()
                if item is None:
                    return  # the auction ended: the stream ends, and the bridge closes the socket
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def build(runtime, *, store: AuctionStore | None = None, rules: AuctionRules | None = None,
                closer_poll: float = 1.0) -> ServiceSpec:
    """The auctions domain for the launcher; tests pass their own store, rules or closer poll."""
    rules = rules or AuctionRules()
    store = store or open_store(runtime.settings)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store)
    feed = BidFeed(store, wire.render_bid, wire.render_close)
    closer = AuctionCloser(store, feed, events.auction_closed, relay.wake, poll=closer_poll)
    servicer = AuctionServicer(store, rules, feed, wake=relay.wake, closer=closer)
    return ServiceSpec(
        domain=DOMAINS["auctions"],
        register=lambda server: auctions_pb2_grpc.add_AuctionServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store], relay=relay, workers=[closer], bus=bus,
        sessions=runtime.sessions(),
    )
