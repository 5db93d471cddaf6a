"""kit/wire.py: the Timestamp, Duration and Money every domain's wire module renders."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agora.common.v1.money_pb2 import Money as MoneyPb

from services.kit import wire
from services.kit.values import Money

AT = datetime(2026, 12, 7, 15, 30, 1, 250_000, tzinfo=timezone.utc)


def test_timestamps_round_trip_and_none_is_empty_or_unset():
    ts = wire.timestamp(AT)
    assert (ts.seconds, ts.nanos) == (int(AT.timestamp()), 250_000_000)
    assert wire.to_datetime(ts) == AT
    assert wire.timestamp(None).ByteSize() == 0  # the empty Timestamp: the epoch on the wire
    assert wire.optional_timestamp(None) is None  # the field stays unset
    assert wire.optional_timestamp(AT) == ts


def test_durations_and_money():
    assert wire.duration(timedelta(minutes=2, milliseconds=5)).ToTimedelta() == timedelta(seconds=120.005)
    price = Money("BRL", 1999)
    assert wire.money(price) == MoneyPb(currency_code="BRL", amount_minor=1999)
    assert wire.money_of("BRL", 1999) == wire.money(price)
    assert wire.from_money(wire.money(price)) == price
