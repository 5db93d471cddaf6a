"""Reading a request body within the bridge's size limit; 413 without a connection reset where it can."""

from __future__ import annotations

from google.rpc import code_pb2

from gateway import errors
from gateway.errors import BridgeError


class BodyReader:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes

    async def read(self, receive, content_length: bytes | None) -> bytes:
        """The whole body; 413 over the limit (declared or sent), 400 for a Content-Length not a number."""
        limit = self.max_bytes
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                raise errors.bad_request("Content-Length is not a number") from None
            if declared > limit:
                raise await _too_large(receive, limit, declared)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BridgeError(code_pb2.CANCELLED, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise await _too_large(receive, limit, None, more=message.get("more_body", False))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _too_large(receive, limit: int, declared: int | None, *, more: bool = True) -> BridgeError:
    """413; a modest excess is read and dropped so the client sees the answer instead of a reset."""
    drain_cap = 8 * limit
    headers: dict[str, str] = {}
    if declared is not None and declared > drain_cap:
        headers["connection"] = "close"  # too much to swallow: answer and hang up
    else:
        drained = 0
        while more and drained <= drain_cap:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            drained += len(message.get("body", b""))
            more = message.get("more_body", False)
        if more:
            headers["connection"] = "close"
    return BridgeError(
        code_pb2.RESOURCE_EXHAUSTED, f"request body exceeds {limit} bytes", http=413, headers=headers
    )
