"""Auction values on the wire: domain auctions and bids to API protos, and the live frames streams send."""

from __future__ import annotations

import grpc
from agora.auctions.v1 import auctions_pb2 as pb

from services.auctions import domain
from services.auctions.domain import CLOSED, Auction, Bid, BidRefused
from services.auctions.live import LiveFrame
from services.kit.auth import Caller
from services.kit.errors import DomainError
from services.kit.wire import duration, money_of, timestamp


def bid_pb(auction: Auction, bid: Bid) -> pb.Bid:
    return pb.Bid(id=bid.id, auction_id=bid.auction_id, sequence=bid.sequence, bidder_id=bid.bidder_id,
                  bidder_name=bid.bidder_name, amount=money_of(auction.currency, bid.amount),
                  placed_at=timestamp(bid.placed_at))


def result_pb(auction: Auction) -> pb.AuctionResult:
    result = pb.AuctionResult(auction_id=auction.id, sold=auction.highest is not None,
                              bid_count=auction.bid_count)
    if auction.closed_at is not None:
        result.closed_at.CopyFrom(timestamp(auction.closed_at))
    if auction.highest is not None:
        result.winner_id = auction.highest.bidder_id
        result.winner_name = auction.highest.bidder_name
        result.price.CopyFrom(money_of(auction.currency, auction.highest.amount))
    return result


def auction_pb(a: Auction) -> pb.Auction:
    out = pb.Auction(
        id=a.id, seller_id=a.seller_id, seller_name=a.seller_name, product_name=a.product_name,
        description=a.description, starting_price=money_of(a.currency, a.starting_price),
        min_increment=money_of(a.currency, a.min_increment), auction_end=timestamp(a.auction_end),
        ends_at=timestamp(a.ends_at), anti_sniping_window=duration(a.window),
        anti_sniping_extension=duration(a.extension), status=a.status,
        current_price=money_of(a.currency, a.current_price),
        minimum_next_bid=money_of(a.currency, a.minimum_next_bid), bid_count=a.bid_count,
        created_at=timestamp(a.created_at),
    )
    if a.highest is not None:
        out.highest_bid.CopyFrom(bid_pb(a, a.highest))
    if a.status == CLOSED:
        out.result.CopyFrom(result_pb(a))
    return out


# -- live frames (services.auctions.live renders each once, for every subscriber)


def render_bid(auction: Auction, bid: Bid) -> LiveFrame:
    accepted = pb.BidAccepted(
        bid=bid_pb(auction, bid), current_price=money_of(auction.currency, bid.amount),
        minimum_next_bid=money_of(auction.currency, bid.amount + auction.min_increment),
        ends_at=timestamp(bid.ends_at), extended=bid.extended,
    )
    return LiveFrame(bid.sequence, pb.WatchAuctionResponse(sequence=bid.sequence, bid=accepted),
                     pb.BidStreamResponse(sequence=bid.sequence, bid=accepted))


def render_close(auction: Auction) -> LiveFrame:
    result = result_pb(auction)
    seq = auction.bid_count + 1
    return LiveFrame(seq, pb.WatchAuctionResponse(sequence=seq, closed=result),
                     pb.BidStreamResponse(sequence=seq, closed=result), final=True)


def rejection(frame: pb.BidStreamRequest, exc: DomainError, auction: Auction) -> pb.BidRejected:
    """A BidStream bid the domain refused, as the stream's `rejected` frame."""
    if isinstance(exc, BidRefused):
        reason, current, minimum = exc.reason, exc.current_price, exc.minimum_next_bid
    else:
        reason = {grpc.StatusCode.UNAUTHENTICATED: "UNAUTHENTICATED",
                  grpc.StatusCode.INVALID_ARGUMENT: "INVALID_AMOUNT"}.get(exc.code, exc.code.name)
        current, minimum = auction.current_price, auction.minimum_next_bid
    return pb.BidRejected(request_id=frame.request_id, amount=frame.amount, code=exc.code.value[0],
                          reason=reason, message=exc.message,
                          current_price=money_of(auction.currency, current),
                          minimum_next_bid=money_of(auction.currency, minimum))


# -- GoBid's frames (SeedSubscribe)


def seed_placed(me: Caller) -> pb.SeedSubscribeResponse:
    return pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_BID_PLACED,
                                    message="Your bid was sucessfully placed", user_id=me.user_id)


def seed_failed(me: Caller, message: str) -> pb.SeedSubscribeResponse:
    return pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_BID_FAILED, message=message, user_id=me.user_id)


def seed_new_bid(placed: pb.Bid) -> pb.SeedSubscribeResponse:
    return pb.SeedSubscribeResponse(
        kind=pb.SEED_MESSAGE_KIND_NEW_BID, message="A new bid was placed",
        amount=domain.major_units(placed.amount.amount_minor, placed.amount.currency_code),
        user_id=placed.bidder_id)


def seed_finished() -> pb.SeedSubscribeResponse:
    return pb.SeedSubscribeResponse(kind=pb.SEED_MESSAGE_KIND_AUCTION_FINISHED,
                                    message="auction has been finished")
