"""JSON responses written straight to ASGI `send`: a body, or an error as {"code","message","details"}."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.codec import dump_json
from gateway.profiles import Profile

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


async def send_json(send: Callable, status: int, value: Any,
                    headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [JSON_CONTENT_TYPE, *headers]})
    await send({"type": "http.response.body", "body": dump_json(value)})


async def send_error(send: Callable, status: int, body: dict[str, Any],
                     headers: Mapping[str, str] | None = None, profile: Profile | None = None) -> None:
    """An error response; a binding's profile may render it in its seed's shape."""
    if profile is not None:
        status, body = profile.render_error(status, body)
    await send_json(send, status, body, [(k.encode(), v.encode()) for k, v in (headers or {}).items()])
