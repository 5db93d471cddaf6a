"""The auctions domain's event envelopes: an auction created, a bid placed, an auction closed."""

from __future__ import annotations

from datetime import datetime

from agora.events.v1 import auctions_pb2 as events_pb2
from agora.events.v1.envelope_pb2 import Envelope

from services.auctions.domain import Auction, BidPlan
from services.auctions.wire import result_pb
from services.kit.bus import new_envelope
from services.kit.wire import duration, money_of, timestamp

SOURCE = "auctions"


def auction_created(auction: Auction, now: datetime) -> list[Envelope]:
    payload = events_pb2.AuctionCreated(
        auction_id=auction.id, seller_id=auction.seller_id, product_name=auction.product_name,
        description=auction.description, starting_price=money_of(auction.currency, auction.starting_price),
        min_increment=money_of(auction.currency, auction.min_increment), ends_at=timestamp(auction.ends_at),
        anti_sniping_window=duration(auction.window), anti_sniping_extension=duration(auction.extension),
        created_at=timestamp(now),
    )
    return [new_envelope("auctions.auction.created", SOURCE, auction.id, payload)]


def bid_placed(plan: BidPlan) -> list[Envelope]:
    b, a = plan.bid, plan.after
    payload = events_pb2.BidPlaced(
        auction_id=a.id, bid_id=b.id, sequence=b.sequence, bidder_id=b.bidder_id, bidder_name=b.bidder_name,
        amount=money_of(a.currency, b.amount), outbid_bidder_id=plan.outbid_bidder_id,
        ends_at=timestamp(b.ends_at), extended=b.extended, placed_at=timestamp(b.placed_at),
    )
    return [new_envelope("auctions.bid.placed", SOURCE, a.id, payload)]


def auction_closed(auction: Auction) -> list[Envelope]:
    result = result_pb(auction)
    payload = events_pb2.AuctionClosed(
        auction_id=auction.id, seller_id=auction.seller_id, product_name=auction.product_name,
        sold=result.sold, winner_id=result.winner_id, winner_name=result.winner_name,
        bid_count=auction.bid_count, closed_at=result.closed_at,
    )
    if result.sold:
        payload.price.CopyFrom(result.price)
    return [new_envelope("auctions.auction.closed", SOURCE, auction.id, payload)]
