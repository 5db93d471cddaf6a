"""Page sizes and page tokens for every List/Query RPC: one rule for size, one token format.

A token carries the store's position (an offset, a key, a cursor) and a hash of the filter it
was issued for, so a token replayed with another filter is refused instead of paging nonsense.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from services.kit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500

T = TypeVar("T")


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE,
              field: str = "page_size") -> int:
    """0 means the default; larger than `maximum` is capped; negative is refused."""
    if requested < 0:
        raise InvalidArgument.field(field, "must not be negative")
    return min(requested or default, maximum)


def _filter_hash(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:12]


def encode_token(position: Any, *filter_parts: str) -> str:
    """The next page's token; pass a JSON-able position (int, str, list)."""
    raw = json.dumps({"p": position, "f": _filter_hash(filter_parts)}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *filter_parts: str, kind: Callable[[Any], T]) -> T | None:
    """The position a token continues from, converted by `kind` (None for no token)."""
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position, digest = kind(data["p"]), data["f"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument.field("page_token", "not a token this RPC issued") from None
    if digest != _filter_hash(filter_parts):
        raise InvalidArgument.field("page_token", "issued for a different filter; start again without it")
    return position


def offset(value: Any) -> int:
    """`kind` for offset positions: a non-negative int."""
    n = int(value)
    if n < 0:
        raise ValueError("negative offset")
    return n
