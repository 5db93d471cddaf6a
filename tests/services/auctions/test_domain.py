"""Auction rules without any server: validation, bid acceptance, refusals, anti-sniping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import grpc
import pytest

from services.auctions import domain
from services.auctions.domain import AuctionClosed, AuctionRules, BidTooLow, Outbid, OwnAuction
from services.kit.errors import InvalidArgument

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
RULES = AuctionRules()


def auction(**changes):
    base = {"auction_id": "a1", "seller_id": "seller", "seller_name": "sam", "product_name": "lamp",
            "description": "", "currency": "USD", "starting_price": 100, "increment_currency": "USD",
            "min_increment": 10, "auction_end": NOW + timedelta(minutes=5), "window": timedelta(seconds=30),
            "extension": timedelta(seconds=60), "now": NOW, "rules": RULES}
    base.update(changes)
    return domain.new_auction(**base)


def bid(a, amount, *, who="bob", at=NOW, lost_race=False, currency="USD"):
    return domain.place_bid(a, bid_id=f"b{amount}", bidder_id=who, bidder_name=who, currency=currency,
                            amount=amount, now=at, lost_race=lost_race)


def test_new_auction_is_open_without_bids():
    a = auction()
    assert a.status == domain.OPEN and a.bid_count == 0 and a.highest is None
    assert a.current_price == 100 and a.minimum_next_bid == 100 and a.ends_at == a.auction_end


def test_new_auction_names_every_bad_field():
    with pytest.raises(InvalidArgument) as err:
        auction(product_name=" ", starting_price=0, min_increment=-1, auction_end=NOW + timedelta(seconds=1),
                window=timedelta(seconds=-1))
    assert {"product_name", "starting_price", "min_increment", "auction_end", "anti_sniping_window"} <= set(
        err.value.violations)


def test_unset_fields_take_server_defaults():
    a = auction(min_increment=None, increment_currency=None, window=None, extension=None)
    assert (a.min_increment == 1 and a.window == RULES.default_window
            and a.extension == RULES.default_extension)


def test_increment_in_another_currency_is_refused():
    with pytest.raises(InvalidArgument) as err:
        auction(increment_currency="EUR")
    assert "min_increment.currency_code" in err.value.violations


def test_first_bid_needs_the_starting_price_then_each_beats_by_the_increment():
    a = auction()
    with pytest.raises(BidTooLow):
        bid(a, 99)
    first = bid(a, 100)
    assert (first.bid.sequence == 1 and first.after.current_price == 100
            and first.after.minimum_next_bid == 110)
    with pytest.raises(BidTooLow) as err:
        bid(first.after, 109)
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert (err.value.current_price, err.value.minimum_next_bid) == (100, 110)
    second = bid(first.after, 110, who="carol")
    assert second.bid.sequence == 2 and second.outbid_bidder_id == "bob"


def test_a_bid_that_lost_a_race_is_outbid_not_too_low():
    after = bid(auction(), 100).after
    with pytest.raises(Outbid) as err:
        bid(after, 100, who="carol", lost_race=True)
    assert err.value.code == grpc.StatusCode.ABORTED and err.value.reason == "OUTBID"
    assert err.value.details()  # ErrorInfo with the prices


def test_seller_cannot_bid_and_closed_auctions_take_no_bids():
    a = auction()
    with pytest.raises(OwnAuction) as err:
        bid(a, 500, who="seller")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(AuctionClosed):
        bid(a, 500, at=a.ends_at)
    with pytest.raises(AuctionClosed):
        bid(domain.close(a, NOW), 500)


def test_wrong_currency_or_nothing_is_invalid():
    with pytest.raises(InvalidArgument):
        bid(auction(), 100, currency="EUR")
    with pytest.raises(InvalidArgument):
        bid(auction(), 0)


def test_anti_sniping_extends_only_inside_the_window():
    a = auction()
    early = bid(a, 100, at=a.ends_at - timedelta(seconds=31))
    assert not early.bid.extended and early.after.ends_at == a.ends_at
    late_at = a.ends_at - timedelta(seconds=10)
    late = bid(a, 100, at=late_at)
    assert late.bid.extended and late.after.ends_at == late_at + timedelta(seconds=60)


def test_anti_sniping_off_with_a_zero_window():
    a = auction(window=timedelta(0))
    assert not bid(a, 100, at=a.ends_at - timedelta(seconds=1)).bid.extended


def test_refusals_name_amounts_as_a_person_writes_them():
    from services.auctions.domain import money_text

    assert money_text(1150, "USD") == "11.50 USD"
    assert money_text(5, "EUR") == "0.05 EUR"
    assert money_text(1200, "JPY") == "1200 JPY"
