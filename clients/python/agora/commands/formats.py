"""How values read and print on the command line: money, durations, times, messages as JSON."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from agora.commands.context import UsageError

_ZERO_DECIMAL = {"JPY", "KRW", "CLP", "VND", "ISK", "UGX", "XAF", "XOF"}


def minor_exponent(currency: str) -> int:
    return 0 if currency.upper() in _ZERO_DECIMAL else 2


def parse_money(text: str, currency: str) -> Any:
    """'12.50' in USD -> Money(amount_minor=1250)."""
    from agora.common.v1.money_pb2 import Money

    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise UsageError(f"{text!r} is not an amount (e.g. 12.50)") from None
    scaled = amount.scaleb(minor_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise UsageError(f"{text} {currency} has more decimals than the currency allows")
    return Money(currency_code=currency.upper(), amount_minor=int(scaled))


def money(m: Any) -> str:
    if m is None or not m.currency_code:
        return "-"
    exp = minor_exponent(m.currency_code)
    value = Decimal(m.amount_minor).scaleb(-exp)
    return f"{value:,.{exp}f} {m.currency_code}"


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> timedelta:
    """'90s', '5m', '2h', '1d' or plain seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a duration (e.g. 90s, 5m, 2h, 1d)")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return timedelta(seconds=number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit])


def timestamp_in(delta: timedelta) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    out = Timestamp()
    out.FromDatetime(datetime.now(timezone.utc) + delta)
    return out


def when(ts: Any) -> str:
    """A Timestamp as local time ('-' when unset)."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return "-"
    return ts.ToDatetime(tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def enum_name(value: int, enum: Any, prefix: str) -> str:
    name = enum.Name(value) if value in enum.values() else str(value)
    return name.removeprefix(prefix).lower().replace("_", "-")


def as_json(message: Any) -> Any:
    """Proto3 JSON (what the REST bridge returns), zero values included so scripts see every field."""
    from google.protobuf import json_format

    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
