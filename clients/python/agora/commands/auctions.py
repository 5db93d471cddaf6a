"""`agora auctions create|list|show|bid|watch`; `watch` draws a live bid ladder."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import Any

from agora.commands.context import EXIT_OK, Invocation
from agora.commands.formats import as_json, enum_name, money, parse_duration, parse_money, timestamp_in, when

LADDER_DEPTH = 10


def register(sub: argparse._SubParsersAction, leaf) -> None:
    auctions = sub.add_parser("auctions", help="live auctions: create, bid, watch the ladder")
    verbs = auctions.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = leaf(verbs, "create", "auction an item (you are the seller)")
    p.add_argument("product_name")
    p.add_argument("--price", required=True, help="starting price, e.g. 10.00")
    p.add_argument("--currency", default="USD")
    p.add_argument("--increment", help="minimum raise, e.g. 0.50 (default: one minor unit)")
    p.add_argument("--ends-in", default="10m", metavar="DURATION",
                   help="bidding ends after e.g. 90s, 10m (default 10m)")
    p.add_argument("--description", default="")
    p.set_defaults(run=create)

    p = leaf(verbs, "list", "auctions: open ones by soonest end")
    p.add_argument("--status", choices=["open", "closed"])
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(run=list_auctions)

    p = leaf(verbs, "show", "an auction's current state")
    p.add_argument("auction_id")
    p.set_defaults(run=show)

    p = leaf(verbs, "bid", "bid on an auction")
    p.add_argument("auction_id")
    p.add_argument("amount", help="e.g. 12.50, in the auction's currency")
    p.set_defaults(run=bid)

    p = leaf(verbs, "watch", "the live bid ladder until the auction closes")
    p.add_argument("auction_id")
    p.add_argument("--from", dest="resume_from", type=int, default=0, metavar="SEQUENCE",
                   help="replay the bids after this sequence first")
    p.add_argument("--limit", type=int, default=0, help="stop after this many frames (0 = until closed)")
    p.set_defaults(run=watch)


def _pb():
    from agora.auctions.v1 import auctions_pb2

    return auctions_pb2


COLUMNS = ["id", "item", "seller", "status", "price", "next bid", "bids", "ends"]


def _row(a: Any) -> list[Any]:
    status = enum_name(a.status, _pb().AuctionStatus, "AUCTION_STATUS_")
    return [a.id, a.product_name, a.seller_name, status, money(a.current_price), money(a.minimum_next_bid),
            a.bid_count, when(a.ends_at)]


def create(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    inv.require_token()
    request = pb.CreateAuctionRequest(product_name=ns.product_name, description=ns.description,
                                      starting_price=parse_money(ns.price, ns.currency),
                                      auction_end=timestamp_in(parse_duration(ns.ends_in)))
    if ns.increment:
        request.min_increment.CopyFrom(parse_money(ns.increment, ns.currency))
    reply = inv.client.auctions.CreateAuction(request)
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table("auction created", COLUMNS, [_row(reply.auction)])
    return EXIT_OK


def list_auctions(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    status = {"open": pb.AUCTION_STATUS_OPEN, "closed": pb.AUCTION_STATUS_CLOSED}.get(ns.status or "", 0)
    reply = inv.client.auctions.ListAuctions(pb.ListAuctionsRequest(page_size=min(ns.limit, 500),
                                                                    status=status))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table(f"{len(reply.auctions)} auction(s)", COLUMNS, [_row(a) for a in reply.auctions])
    return EXIT_OK


def show(inv: Invocation) -> int:
    reply = inv.client.auctions.GetAuction(_pb().GetAuctionRequest(auction_id=inv.ns.auction_id))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table(None, COLUMNS, [_row(reply.auction)])
    return EXIT_OK


def bid(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    inv.require_token()
    auction = inv.client.auctions.GetAuction(pb.GetAuctionRequest(auction_id=ns.auction_id)).auction
    reply = inv.client.auctions.PlaceBid(pb.PlaceBidRequest(
        auction_id=ns.auction_id, amount=parse_money(ns.amount,
                                                     auction.current_price.currency_code or "USD")))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.console.print(f"bid #{reply.bid.sequence} of {money(reply.bid.amount)} accepted; "
                          f"next bid at least {money(reply.auction.minimum_next_bid)}")
    return EXIT_OK


class BidLadder:
    """The state `watch` draws: the highest bids first, the price, and how it ended."""

    def __init__(self, auction: Any, bids: list[Any]) -> None:
        self.auction = auction
        self.bids = sorted(bids, key=lambda b: b.sequence, reverse=True)[:LADDER_DEPTH]
        self.price = auction.current_price
        self.next_bid = auction.minimum_next_bid
        self.ends_at = auction.ends_at
        self.result: Any = None

    def apply(self, frame: Any) -> None:
        kind = frame.WhichOneof("event")
        if kind == "snapshot":
            self.auction = frame.snapshot
            self.price, self.next_bid, self.ends_at = (frame.snapshot.current_price,
                                                       frame.snapshot.minimum_next_bid,
                                                       frame.snapshot.ends_at)
        elif kind == "bid":
            accepted = frame.bid
            self.bids = [accepted.bid, *self.bids][:LADDER_DEPTH]
            self.price, self.next_bid, self.ends_at = (accepted.current_price, accepted.minimum_next_bid,
                                                       accepted.ends_at)
        elif kind == "closed":
            self.result = frame.closed

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        head = Text(f"{self.auction.product_name}  ", style="bold")
        head.append(f"price {money(self.price)}  next bid ≥ {money(self.next_bid)}", style="green")
        if self.result is not None:
            tail = (f"SOLD to {self.result.winner_name} for {money(self.result.price)}" if self.result.sold
                    else "closed without bids")
            status = Text(tail, style="bold magenta")
        else:
            left = self.ends_at.ToDatetime(tzinfo=timezone.utc) - datetime.now(timezone.utc)
            status = Text(f"ends {when(self.ends_at)} (in {max(int(left.total_seconds()), 0)}s)", style="dim")
        ladder = Table(box=None, pad_edge=False)
        for column in ("#", "amount", "bidder", "at"):
            ladder.add_column(column)
        for i, b in enumerate(self.bids):
            style = "bold green" if i == 0 else ""
            ladder.add_row(str(b.sequence), money(b.amount), b.bidder_name, when(b.placed_at), style=style)
        return Group(head, status, ladder)


def watch(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    auction = inv.client.auctions.GetAuction(pb.GetAuctionRequest(auction_id=ns.auction_id)).auction
    frames = inv.client.watch_auction(ns.auction_id, resume_from=ns.resume_from,
                                      on_retry=lambda e, n, d: inv.note(
        f"[yellow]connection lost ({e.code.name}); resuming[/yellow]"))
    seen = 0
    if inv.json or not inv.console.is_terminal:
        for frame in frames:
            if inv.json:
                inv.emit_line(as_json(frame))
            else:
                print(_frame_line(frame), flush=True)
            seen += 1
            if ns.limit and seen >= ns.limit:
                break
        return EXIT_OK
    from rich.live import Live

    recent = inv.client.auctions.ListBids(pb.ListBidsRequest(auction_id=ns.auction_id,
                                                             page_size=LADDER_DEPTH)).bids
    ladder = BidLadder(auction, list(recent))
    # get_renderable: the countdown redraws on every refresh, not only when a bid arrives
    with Live(console=inv.console, refresh_per_second=2, get_renderable=ladder.render) as live:
        for frame in frames:
            if frame.WhichOneof("event") == "bid" and frame.bid.bid.sequence <= max(
                    (b.sequence for b in ladder.bids), default=0):
                continue  # already on the ladder from ListBids
            ladder.apply(frame)
            live.refresh()
            seen += 1
            if ns.limit and seen >= ns.limit:
                break
    return EXIT_OK


def _frame_line(frame: Any) -> str:
    kind = frame.WhichOneof("event")
    if kind == "bid":
        b = frame.bid.bid
        return f"{frame.sequence}: bid {money(b.amount)} by {b.bidder_name}" + (" (extended)"
                                                                                if frame.bid.extended else "")
    if kind == "closed":
        r = frame.closed
        return f"{frame.sequence}: closed, " + (f"sold to {r.winner_name} for {money(r.price)}" if r.sold
                                                else "not sold")
    a = frame.snapshot
    return (f"{frame.sequence}: {a.product_name} at {money(a.current_price)}, {a.bid_count} bids, "
            f"ends {when(a.ends_at)}")
