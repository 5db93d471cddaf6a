"""Value types more than one domain's rules use. Plain data: no I/O, no protobuf."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Money:
    """An amount in a currency's minor unit (cents): integers only, so sums are exact."""

    currency_code: str
    amount_minor: int
