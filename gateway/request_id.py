"""X-Request-Id: echo a sane one or make one, for the response and the upstream call's metadata."""

from __future__ import annotations

import itertools
import re
import uuid

REQUEST_ID_HEADER = b"x-request-id"
SCOPE_KEY = "agora.request_id"  # where the middleware leaves the id in the ASGI scope
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Generated ids: a random per-process prefix and a counter, unique without a urandom call per request.
_request_ids = (f"{uuid.uuid4().hex[:16]}-{n:x}" for n in itertools.count(1))


def request_id(scope) -> str:
    """The request's id ("" outside the middleware)."""
    return scope.get(SCOPE_KEY, "")


class RequestIdMiddleware:
    """Echo a sane X-Request-Id or make one; the bridge forwards it as x-request-id metadata."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = None
        for key, value in scope["headers"]:
            if key == REQUEST_ID_HEADER:
                text = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    rid = text
                break
        if rid is None:
            rid = next(_request_ids)
        scope[SCOPE_KEY] = rid
        header = (REQUEST_ID_HEADER, rid.encode())

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if not any(k.lower() == REQUEST_ID_HEADER for k, _ in headers):
                    message["headers"] = [*headers, header]
            await send(message)

        await self.app(scope, receive, send_with_id)
