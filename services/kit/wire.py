"""Proto ⇄ value converters every domain's wire module needs: Timestamp, Duration, Money.

A domain's own `wire.py` converts its messages; these are the well-known and common types under them.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from agora.common.v1.money_pb2 import Money as MoneyPb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit.values import Money


def timestamp(value: datetime | None) -> Timestamp:
    """A Timestamp for `value`; the empty Timestamp (the epoch on the wire) for None."""
    out = Timestamp()
    if value is not None:
        out.FromDatetime(value)
    return out


def optional_timestamp(value: datetime | None) -> Timestamp | None:
    """A Timestamp for `value`, None for None: the field stays unset (and absent from JSON)."""
    return None if value is None else timestamp(value)


def to_datetime(value: Timestamp) -> datetime:
    """An aware UTC datetime for a Timestamp."""
    return value.ToDatetime(tzinfo=timezone.utc)


def duration(value: timedelta) -> Duration:
    out = Duration()
    out.FromTimedelta(value)
    return out


def money(value: Money) -> MoneyPb:
    return MoneyPb(currency_code=value.currency_code, amount_minor=value.amount_minor)


def money_of(currency_code: str, amount_minor: int) -> MoneyPb:
    """Money for an amount a domain keeps beside its currency (an auction's bids)."""
    return MoneyPb(currency_code=currency_code, amount_minor=amount_minor)


def from_money(value: MoneyPb) -> Money:
    return Money(value.currency_code, value.amount_minor)
