"""Auction rules: what a valid auction is, which bid wins, anti-sniping, closing. Values in, values out;
no I/O."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from google.protobuf import any_pb2
from google.rpc import error_details_pb2

from services.kit.errors import Aborted, FailedPrecondition, InvalidArgument, PermissionDenied

OPEN, CLOSED = 1, 2  # agora.auctions.v1.AuctionStatus values
MAX_NAME, MAX_DESCRIPTION = 200, 2000
CURRENCY_LEN = 3


@dataclass(frozen=True)
class AuctionRules:
    """Server-side tunables (tests shorten them)."""

    min_duration: timedelta = timedelta(seconds=5)  # auction_end at least this far ahead
    max_duration: timedelta = timedelta(days=90)
    default_window: timedelta = timedelta(seconds=30)  # anti-sniping window when the request leaves it unset
    default_extension: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class Bid:
    id: str
    auction_id: str
    sequence: int
    bidder_id: str
    bidder_name: str
    amount: int  # minor units, in the auction's currency
    placed_at: datetime
    ends_at: datetime  # the auction's effective end after this bid
    extended: bool
    request_id: str = ""


@dataclass(frozen=True)
class Auction:
    id: str
    seller_id: str
    seller_name: str
    product_name: str
    description: str
    currency: str
    starting_price: int
    min_increment: int
    auction_end: datetime
    ends_at: datetime
    window: timedelta
    extension: timedelta
    status: int
    bid_count: int
    highest: Bid | None
    created_at: datetime
    closed_at: datetime | None = None

    @property
    def current_price(self) -> int:
        return self.highest.amount if self.highest else self.starting_price

    @property
    def minimum_next_bid(self) -> int:
        return self.highest.amount + self.min_increment if self.highest else self.starting_price

    def is_due(self, now: datetime) -> bool:
        return self.status == OPEN and now >= self.ends_at


@dataclass(frozen=True)
class BidPlan:
    """An accepted bid and what it does to the auction."""

    bid: Bid
    before: Auction
    after: Auction

    @property
    def outbid_bidder_id(self) -> str:
        return self.before.highest.bidder_id if self.before.highest else ""


# -- refusals: each carries ErrorInfo with the reason and the prices, as the contract promises


class BidRefused:
    reason: str = ""
    current_price: int = 0
    minimum_next_bid: int = 0

    def _about(self, reason: str, auction: Auction) -> None:
        self.reason = reason
        self.currency = auction.currency
        self.current_price = auction.current_price
        self.minimum_next_bid = auction.minimum_next_bid

    def details(self) -> list[any_pb2.Any]:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.ErrorInfo(
            reason=self.reason, domain="auctions.agora",
            metadata={"current_price": str(self.current_price),
                      "minimum_next_bid": str(self.minimum_next_bid), "currency_code": self.currency},
        ))
        return [packed]


# ISO 4217 currencies without minor units; every other one here has two decimals.
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF"})


def money_text(minor: int, currency: str) -> str:
    """1150, "USD" -> "11.50 USD": for messages a person reads (the details keep minor units)."""
    if currency in _ZERO_DECIMAL:
        return f"{minor} {currency}"
    sign, minor = ("-", -minor) if minor < 0 else ("", minor)
    return f"{sign}{minor // 100}.{minor % 100:02d} {currency}"


class BidTooLow(BidRefused, FailedPrecondition):
    def __init__(self, auction: Auction, amount: int) -> None:
        c = auction.currency
        FailedPrecondition.__init__(
            self, f"a bid of {money_text(amount, c)} is below the minimum next bid of "
                  f"{money_text(auction.minimum_next_bid, c)} "
                  f"(current price {money_text(auction.current_price, c)})")
        self._about("BID_TOO_LOW", auction)


class Outbid(BidRefused, Aborted):
    def __init__(self, auction: Auction, amount: int) -> None:
        c = auction.currency
        Aborted.__init__(
            self, f"another bid was accepted first: the price is now {money_text(auction.current_price, c)} "
                  f"and a bid of {money_text(amount, c)} no longer beats it; "
                  f"bid at least {money_text(auction.minimum_next_bid, c)}")
        self._about("OUTBID", auction)


class AuctionClosed(BidRefused, FailedPrecondition):
    def __init__(self, auction: Auction) -> None:
        FailedPrecondition.__init__(self, f"auction {auction.id} has ended")
        self._about("AUCTION_CLOSED", auction)


class OwnAuction(BidRefused, PermissionDenied):
    def __init__(self, auction: Auction) -> None:
        PermissionDenied.__init__(self, "you cannot bid on your own auction")
        self._about("OWN_AUCTION", auction)


# -- GoBid's own rules (the seed routes): its limits and its words, which its clients show

SEED_CURRENCY = "USD"  # the seed's prices are plain floats, in dollars
SEED_MIN_DURATION = timedelta(hours=2)
SEED_DESCRIPTION = (10, 255)
SEED_BID_TOO_LOW = "the bid values is too low"  # services.ErrBidIsTooLow, spelled as the seed does


def minor_units(value: float, currency: str) -> int | None:
    """A float amount in major units as exact minor units (150.1 -> 15010), or None when it has more
    decimals than the currency has: the float's shortest decimal form decides, so 0.1 is 10 cents."""
    digits = 0 if currency in _ZERO_DECIMAL else 2
    exact = Decimal(repr(float(value)))
    scaled = exact.scaleb(digits)
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def major_units(minor: int, currency: str) -> float:
    return float(minor if currency in _ZERO_DECIMAL else Decimal(minor).scaleb(-2))


def validate_seed_product(product_name: str, description: str, baseprice: float,
                          auction_end: datetime | None, now: datetime) -> int:
    """GoBid's product rules; the base price in minor units. Refusals name the seed's fields."""
    problems: dict[str, str] = {}
    if not product_name.strip():
        problems["product_name"] = "this field cannot be blank"
    if not description.strip():
        problems["description"] = "this field cannot be blank"
    elif not SEED_DESCRIPTION[0] <= len(description) <= SEED_DESCRIPTION[1]:
        problems["description"] = "this field must have a length betwenn 10 and 255"  # sic, the seed's text
    minor = minor_units(baseprice, SEED_CURRENCY) if baseprice > 0 else None
    if not baseprice > 0:
        problems["baseprice"] = "this field must be greater than 0"
    elif minor is None:
        problems["baseprice"] = f"must have at most 2 decimal places (cents): {baseprice!r} has more"
    if auction_end is None or auction_end - now < SEED_MIN_DURATION:
        problems["auction_end"] = "must be at least two hours duration"
    if problems:
        raise InvalidArgument.fields(problems)
    assert minor is not None
    return minor


# -- rules


def new_auction(*, auction_id: str, seller_id: str, seller_name: str, product_name: str, description: str,
                currency: str, starting_price: int | None, increment_currency: str | None,
                min_increment: int | None, auction_end: datetime | None, window: timedelta | None,
                extension: timedelta | None,
                now: datetime, rules: AuctionRules) -> Auction:
    """A validated, open auction with no bids. `None` means the request left the field unset."""
    problems: dict[str, str] = {}
    if not product_name.strip() or len(product_name) > MAX_NAME:
        problems["product_name"] = f"must be 1 to {MAX_NAME} characters"
    if len(description) > MAX_DESCRIPTION:
        problems["description"] = f"must be at most {MAX_DESCRIPTION} characters"
    if starting_price is None or starting_price <= 0:
        problems["starting_price"] = "must be given and positive (amount_minor > 0)"
    elif len(currency) != CURRENCY_LEN or not currency.isalpha() or not currency.isupper():
        problems["starting_price.currency_code"] = "must be an ISO 4217 code such as USD"
    if min_increment is None:
        min_increment = 1
    elif min_increment <= 0:
        problems["min_increment"] = "must be positive"
    elif increment_currency != currency:
        problems["min_increment.currency_code"] = f"must be the starting price's currency ({currency})"
    if auction_end is None:
        problems["auction_end"] = "must be given"
    elif auction_end < now + rules.min_duration:
        problems["auction_end"] = f"must be at least {rules.min_duration.total_seconds():g}s in the future"
    elif auction_end > now + rules.max_duration:
        problems["auction_end"] = f"must be at most {rules.max_duration.days} days ahead"
    window = rules.default_window if window is None else window
    extension = rules.default_extension if extension is None else extension
    if window < timedelta(0):
        problems["anti_sniping_window"] = "must not be negative"
    if extension < timedelta(0):
        problems["anti_sniping_extension"] = "must not be negative"
    if problems:
        raise InvalidArgument.fields(problems)
    assert auction_end is not None and starting_price is not None
    return Auction(
        id=auction_id, seller_id=seller_id, seller_name=seller_name, product_name=product_name.strip(),
        description=description, currency=currency, starting_price=starting_price,
        min_increment=min_increment, auction_end=auction_end, ends_at=auction_end, window=window,
        extension=extension, status=OPEN,
        bid_count=0, highest=None, created_at=now,
    )


def place_bid(auction: Auction, *, bid_id: str, bidder_id: str, bidder_name: str, currency: str, amount: int,
              now: datetime, request_id: str = "", lost_race: bool = False) -> BidPlan:
    """Accept the bid or raise why not. `lost_race`: the auction changed under this bid (another bid
    won the race), so a bid that no longer beats the price is OUTBID (ABORTED), not BID_TOO_LOW."""
    if amount <= 0:
        raise InvalidArgument.field("amount", "must be given and positive")
    if currency != auction.currency:
        raise InvalidArgument.field("amount.currency_code",
                                    f"must be the auction's currency ({auction.currency})")
    if bidder_id == auction.seller_id:
        raise OwnAuction(auction)
    if auction.status != OPEN or now >= auction.ends_at:
        raise AuctionClosed(auction)
    if amount < auction.minimum_next_bid:
        raise Outbid(auction, amount) if lost_race else BidTooLow(auction, amount)
    ends_at, extended = auction.ends_at, False
    if auction.window > timedelta(0) and auction.ends_at - now <= auction.window:
        pushed = now + auction.extension
        if pushed > ends_at:
            ends_at, extended = pushed, True
    bid = Bid(id=bid_id, auction_id=auction.id, sequence=auction.bid_count + 1, bidder_id=bidder_id,
              bidder_name=bidder_name, amount=amount, placed_at=now, ends_at=ends_at, extended=extended,
              request_id=request_id)
    after = dataclasses.replace(auction, ends_at=ends_at, bid_count=bid.sequence, highest=bid)
    return BidPlan(bid=bid, before=auction, after=after)


def close(auction: Auction, now: datetime) -> Auction:
    """The auction as closed at `now` (the caller checked it is due)."""
    return dataclasses.replace(auction, status=CLOSED, closed_at=now)
