"""The auctions gRPC servicer: create, get, list, bid, watch, and the seed's bidding WebSocket (BidStream)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import ClassVar

import grpc
from agora.auctions.v1 import auctions_pb2 as pb
from agora.auctions.v1 import auctions_pb2_grpc
from agora.common.v1.money_pb2 import Money
from agora.events.v1 import auctions_pb2 as events_pb2
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.auctions import domain
from services.auctions.domain import CLOSED, Auction, AuctionRules, Bid, BidPlan, BidRefused
from services.auctions.live import AuctionCloser, BidFeed, LiveFrame
from services.auctions.store import AuctionStore, PlacedBid, open_store
from services.kit import auth
from services.kit.auth import Caller, SessionResolver
from services.kit.bus import new_envelope
from services.kit.bus.outbox import OutboxRelay
from services.kit.errors import DomainError, InvalidArgument, NotFound, Unauthenticated
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec

DEFAULT_PAGE, MAX_PAGE = 50, 500
MAX_REQUEST_ID = 128
FIRST_FRAME_TIMEOUT = 30.0  # a BidStream that never names its auction is ended, not kept forever
OUTBOUND_BUFFER = 64


class OutOfRange(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.OUT_OF_RANGE


# -- proto <-> domain


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _ts(t: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(t)
    return out


def _duration(d: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(d)
    return out


def _money(currency: str, minor: int) -> Money:
    return Money(currency_code=currency, amount_minor=minor)


def bid_pb(auction: Auction, bid: Bid) -> pb.Bid:
    return pb.Bid(id=bid.id, auction_id=bid.auction_id, sequence=bid.sequence, bidder_id=bid.bidder_id,
                  bidder_name=bid.bidder_name, amount=_money(auction.currency, bid.amount),
                  placed_at=_ts(bid.placed_at))


def result_pb(auction: Auction) -> pb.AuctionResult:
    result = pb.AuctionResult(auction_id=auction.id, sold=auction.highest is not None, bid_count=auction.bid_count)
    if auction.closed_at is not None:
        result.closed_at.CopyFrom(_ts(auction.closed_at))
    if auction.highest is not None:
        result.winner_id = auction.highest.bidder_id
        result.winner_name = auction.highest.bidder_name
        result.price.CopyFrom(_money(auction.currency, auction.highest.amount))
    return result


def auction_pb(a: Auction) -> pb.Auction:
    out = pb.Auction(
        id=a.id, seller_id=a.seller_id, seller_name=a.seller_name, product_name=a.product_name,
        description=a.description, starting_price=_money(a.currency, a.starting_price),
        min_increment=_money(a.currency, a.min_increment), auction_end=_ts(a.auction_end), ends_at=_ts(a.ends_at),
        anti_sniping_window=_duration(a.window), anti_sniping_extension=_duration(a.extension),
        status=a.status, current_price=_money(a.currency, a.current_price),
        minimum_next_bid=_money(a.currency, a.minimum_next_bid), bid_count=a.bid_count, created_at=_ts(a.created_at),
    )
    if a.highest is not None:
        out.highest_bid.CopyFrom(bid_pb(a, a.highest))
    if a.status == CLOSED:
        out.result.CopyFrom(result_pb(a))
    return out


def render_bid(auction: Auction, bid: Bid) -> LiveFrame:
    accepted = pb.BidAccepted(
        bid=bid_pb(auction, bid), current_price=_money(auction.currency, bid.amount),
        minimum_next_bid=_money(auction.currency, bid.amount + auction.min_increment),
        ends_at=_ts(bid.ends_at), extended=bid.extended,
    )
    return LiveFrame(bid.sequence, pb.WatchAuctionResponse(sequence=bid.sequence, bid=accepted),
                     pb.BidStreamResponse(sequence=bid.sequence, bid=accepted))


def render_close(auction: Auction) -> LiveFrame:
    result = result_pb(auction)
    seq = auction.bid_count + 1
    return LiveFrame(seq, pb.WatchAuctionResponse(sequence=seq, closed=result),
                     pb.BidStreamResponse(sequence=seq, closed=result), final=True)


def _page_token(kind: str, value: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def _read_page_token(kind: str, token: str) -> int:
    if not token:
        return 0
    try:
        prefix, _, value = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition(":")
        number = int(value)
        if prefix != kind or number < 0:
            raise ValueError
        return number
    except ValueError:
        raise InvalidArgument.field("page_token", "is not a token this server issued; start again without it") \
            from None


def _page_size(size: int) -> int:
    if size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    return min(size or DEFAULT_PAGE, MAX_PAGE)


# -- sessions


class LenientSessions:
    """Resolves tokens through identity (cached), but lets a dead token through as a caller with
    no user id instead of failing every call: watching needs no session, so a browser holding an
    expired cookie can still watch; the methods that need a session refuse it (signed_in)."""

    def __init__(self, inner: SessionResolver) -> None:
        self.inner = inner

    async def resolve(self, token: str) -> Caller | None:
        found = await self.inner.resolve(token)
        return found if found is not None else Caller("", "")


def signed_in() -> Caller:
    found = auth.caller()
    if found is None:
        raise Unauthenticated("this call needs a signed-in user: send `authorization: Bearer <session token>`")
    if not found.user_id:
        raise Unauthenticated("the session is unknown, expired or revoked: log in again")
    return found


# -- the servicer


class AuctionServicer(auctions_pb2_grpc.AuctionServiceServicer):
    def __init__(self, store: AuctionStore, rules: AuctionRules, feed: BidFeed,
                 relay: OutboxRelay | None = None) -> None:
        self.store = store
        self.rules = rules
        self.feed = feed
        self.relay = relay
        self.closer: AuctionCloser | None = None

    def _published(self) -> None:
        if self.relay is not None:
            self.relay.wake()

    async def _auction(self, auction_id: str, field: str = "auction_id") -> Auction:
        if not auction_id:
            raise InvalidArgument.field(field, "must name an auction")
        auction = await self.store.get_auction(auction_id)
        if auction is None:
            raise NotFound.of("auction", auction_id)
        return auction

    # unary

    async def CreateAuction(self, request: pb.CreateAuctionRequest, context) -> pb.CreateAuctionResponse:
        me = signed_in()
        now = _now()
        auction = domain.new_auction(
            auction_id=str(uuid.uuid4()), seller_id=me.user_id, seller_name=me.username,
            product_name=request.product_name, description=request.description,
            currency=request.starting_price.currency_code,
            starting_price=request.starting_price.amount_minor if request.HasField("starting_price") else None,
            increment_currency=request.min_increment.currency_code,
            min_increment=request.min_increment.amount_minor if request.HasField("min_increment") else None,
            auction_end=request.auction_end.ToDatetime(timezone.utc) if request.HasField("auction_end") else None,
            window=request.anti_sniping_window.ToTimedelta() if request.HasField("anti_sniping_window") else None,
            extension=(request.anti_sniping_extension.ToTimedelta()
                       if request.HasField("anti_sniping_extension") else None),
            now=now, rules=self.rules,
        )
        created = events_pb2.AuctionCreated(
            auction_id=auction.id, seller_id=auction.seller_id, product_name=auction.product_name,
            description=auction.description, starting_price=_money(auction.currency, auction.starting_price),
            min_increment=_money(auction.currency, auction.min_increment), ends_at=_ts(auction.ends_at),
            anti_sniping_window=_duration(auction.window), anti_sniping_extension=_duration(auction.extension),
            created_at=_ts(now),
        )
        await self.store.create_auction(
            auction, [new_envelope("auctions.auction.created", "auctions", auction.id, created)])
        self._published()
        if self.closer is not None:
            self.closer.wake()
        return pb.CreateAuctionResponse(product_id=auction.id, auction=auction_pb(auction))

    async def GetAuction(self, request: pb.GetAuctionRequest, context) -> pb.GetAuctionResponse:
        return pb.GetAuctionResponse(auction=auction_pb(await self._auction(request.auction_id)))

    async def ListAuctions(self, request: pb.ListAuctionsRequest, context) -> pb.ListAuctionsResponse:
        size = _page_size(request.page_size)
        offset = _read_page_token("a", request.page_token)
        if request.status not in (0, domain.OPEN, domain.CLOSED):
            raise InvalidArgument.field("status", "must be AUCTION_STATUS_OPEN, AUCTION_STATUS_CLOSED or unset")
        found = await self.store.list_auctions(request.status, request.seller_id, offset, size + 1)
        more = len(found) > size
        return pb.ListAuctionsResponse(auctions=[auction_pb(a) for a in found[:size]],
                                       next_page_token=_page_token("a", offset + size) if more else "")

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

        placed = await self.store.place_bid(auction_id, me.user_id, request_id, decide, self._bid_events)
        if not placed.replayed:
            self._published()
            await self.feed.advance(placed.auction, placed.bid)
        return placed

    @staticmethod
    def _bid_events(plan: BidPlan):
        b, a = plan.bid, plan.after
        payload = events_pb2.BidPlaced(
            auction_id=a.id, bid_id=b.id, sequence=b.sequence, bidder_id=b.bidder_id, bidder_name=b.bidder_name,
            amount=_money(a.currency, b.amount), outbid_bidder_id=plan.outbid_bidder_id, ends_at=_ts(b.ends_at),
            extended=b.extended, placed_at=_ts(b.placed_at),
        )
        return [new_envelope("auctions.bid.placed", "auctions", a.id, payload)]

    @staticmethod
    def close_events(auction: Auction):
        result = result_pb(auction)
        payload = events_pb2.AuctionClosed(
            auction_id=auction.id, seller_id=auction.seller_id, product_name=auction.product_name, sold=result.sold,
            winner_id=result.winner_id, winner_name=result.winner_name, bid_count=auction.bid_count,
            closed_at=result.closed_at,
        )
        if result.sold:
            payload.price.CopyFrom(result.price)
        return [new_envelope("auctions.auction.closed", "auctions", auction.id, payload)]

    async def PlaceBid(self, request: pb.PlaceBidRequest, context) -> pb.PlaceBidResponse:
        me = signed_in()
        if not request.HasField("amount"):
            raise InvalidArgument.field("amount", "must be given")
        placed = await self.place(me, request.auction_id, request.amount, request.request_id)
        return pb.PlaceBidResponse(bid=bid_pb(placed.auction, placed.bid), auction=auction_pb(placed.auction))

    async def ListBids(self, request: pb.ListBidsRequest, context) -> pb.ListBidsResponse:
        size = _page_size(request.page_size)
        before = _read_page_token("b", request.page_token)
        auction = await self._auction(request.auction_id)
        bids = await self.store.list_bids(auction.id, before, size)
        more = len(bids) == size and bids[-1].sequence > 1
        return pb.ListBidsResponse(bids=[bid_pb(auction, b) for b in bids],
                                   next_page_token=_page_token("b", bids[-1].sequence) if more else "")

    # streams

    async def _opening(self, auction: Auction, resume_from: int) -> tuple[bool, int]:
        """(send a snapshot first?, the sequence live frames start after)."""
        latest = auction.bid_count + (1 if auction.status == CLOSED else 0)
        if resume_from > latest:
            raise OutOfRange(f"resume_from {resume_from} is beyond auction {auction.id}'s latest sequence {latest}")
        return (resume_from == 0, auction.bid_count if resume_from == 0 else resume_from)

    async def WatchAuction(self, request: pb.WatchAuctionRequest, context) -> AsyncIterator[pb.WatchAuctionResponse]:
        auction = await self._auction(request.auction_id)
        snapshot, after = await self._opening(auction, request.resume_from)
        if snapshot:
            yield pb.WatchAuctionResponse(sequence=auction.bid_count, snapshot=auction_pb(auction))
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
                "product_id", f"no first frame naming the auction arrived within {FIRST_FRAME_TIMEOUT:g}s") from None
        auction = await self._auction(first.product_id, "product_id")
        snapshot, after = await self._opening(auction, first.resume_from)
        # One bounded queue carries, in order, live frames (from the pump) and this client's
        # rejections (from the reader); a full queue holds the pump back, and a pump that falls
        # too far behind the log is ended by it (RESOURCE_EXHAUSTED).
        out: asyncio.Queue[tuple[str, object]] = asyncio.Queue(maxsize=OUTBOUND_BUFFER)
        me = auth.caller()

        async def bid(frame: pb.BidStreamRequest) -> None:
            try:
                if me is None or not me.user_id:
                    signed_in()  # raises the right UNAUTHENTICATED
                await self.place(me, auction.id, frame.amount, frame.request_id)
            except DomainError as exc:
                await out.put(("rejected", _rejection(frame, exc, auction)))

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
            yield pb.BidStreamResponse(sequence=auction.bid_count, snapshot=auction_pb(auction))
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

    async def SeedCreateProduct(self, request: pb.SeedCreateProductRequest, context) -> pb.SeedCreateProductResponse:
        signed_in()
        end = request.auction_end.ToDatetime(timezone.utc) if request.HasField("auction_end") else None
        base = domain.validate_seed_product(request.product_name, request.description, request.baseprice, end,
                                            _now())
        created = await self.CreateAuction(pb.CreateAuctionRequest(
            product_name=request.product_name, description=request.description,
            starting_price=_money(domain.SEED_CURRENCY, base),
            # The seed's rule is "more than the current price": one cent more, and no anti-sniping.
            min_increment=_money(domain.SEED_CURRENCY, 1), auction_end=request.auction_end,
            anti_sniping_window=Duration(), anti_sniping_extension=Duration(),
        ), context)
        return pb.SeedCreateProductResponse(id=created.product_id)

    async def SeedSubscribe(self, request_iterator, context) -> AsyncIterator[pb.SeedSubscribeResponse]:
        frames_in = request_iterator.__aiter__()
        try:
            first = await asyncio.wait_for(frames_in.__anext__(), FIRST_FRAME_TIMEOUT)
        except (StopAsyncIteration, asyncio.TimeoutError):
            raise InvalidArgument.field("product_id", "the first frame must name the product") from None
        me = signed_in()  # after the first frame: a frame that does not even parse is refused as such
        try:
            product_id = str(uuid.UUID(first.product_id))
        except ValueError:
            raise InvalidArgument.field("product_id", "invalid product id - must be a valid uuid") from None
        auction = await self._auction(product_id, "product_id")
        if auction.status == CLOSED:
            raise domain.AuctionClosed(auction)
        # Checked: the bridge may now complete the upgrade (the seed answers the errors above in HTTP).
        await context.send_initial_metadata((("x-agora-stream", "open"),))
        out: asyncio.Queue[pb.SeedSubscribeResponse | BaseException | None] = asyncio.Queue(maxsize=OUTBOUND_BUFFER)

        async def bid(frame: pb.SeedSubscribeRequest) -> pb.SeedSubscribeResponse:
            current = await self._auction(product_id, "product_id")
            minor = domain.minor_units(frame.amount, current.currency)
            if minor is None:
                return _seed_failed(me, f"an amount has at most 2 decimal places (cents): {frame.amount!r} has more")
            if minor <= current.current_price:
                return _seed_failed(me, domain.SEED_BID_TOO_LOW)
            try:
                await self.place(me, product_id, Money(currency_code=current.currency, amount_minor=minor), "")
            except (domain.BidTooLow, domain.Outbid):
                return _seed_failed(me, domain.SEED_BID_TOO_LOW)
            except DomainError as exc:
                return _seed_failed(me, exc.message)
            return pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_BID_PLACED,
                                            message="Your bid was sucessfully placed", user_id=me.user_id)

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
                        placed = frame.watch.bid.bid
                        await out.put(pb.SeedSubscribeResponse(
                            kind=pb.SEED_MESSAGE_KIND_NEW_BID, message="A new bid was placed",
                            amount=domain.major_units(placed.amount.amount_minor, placed.amount.currency_code),
                            user_id=placed.bidder_id))
                    elif event == "closed":
                        await out.put(pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_AUCTION_FINISHED,
                                                               message="auction has been finished"))
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


def _seed_failed(me: Caller, message: str) -> pb.SeedSubscribeResponse:
    return pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_BID_FAILED, message=message, user_id=me.user_id)


def _rejection(frame: pb.BidStreamRequest, exc: DomainError, auction: Auction) -> pb.BidRejected:
    if isinstance(exc, BidRefused):
        reason, current, minimum = exc.reason, exc.current_price, exc.minimum_next_bid
    else:
        reason = {grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
                  grpc.StatusCode.INVALID_ARGUMENT: "INVALID_AMOUNT"}.get(exc.code, exc.code.name)
        current, minimum = auction.current_price, auction.minimum_next_bid
    return pb.BidRejected(request_id=frame.request_id, amount=frame.amount, code=exc.code.value[0], reason=reason,
                          message=exc.message, current_price=_money(auction.currency, current),
                          minimum_next_bid=_money(auction.currency, minimum))


async def build(runtime, *, store: AuctionStore | None = None, rules: AuctionRules | None = None,
                closer_poll: float = 1.0) -> ServiceSpec:
    rules = rules or AuctionRules()
    store = store or open_store(runtime.settings)
    await store.open()
    bus = await runtime.bus()
    relay = OutboxRelay(bus, store.outbox, store.connect_relay)
    feed = BidFeed(store, render_bid, render_close)
    servicer = AuctionServicer(store, rules, feed, relay)
    closer = AuctionCloser(store, feed, AuctionServicer.close_events, lambda _: relay.wake(), poll=closer_poll)
    servicer.closer = closer

    return ServiceSpec(
        domain=DOMAINS["auctions"],
        register=lambda server: auctions_pb2_grpc.add_AuctionServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        on_start=[relay.start, closer.start],
        on_stop=[closer.stop, relay.stop, store.close],
        sessions=LenientSessions(runtime.sessions()),
    )
