"""Direct writes: a shared feed's frames go straight to each connection's transport, already framed.

A feed encodes each upstream message once per transport (feeds.py). Through ASGI, every delivery
would still cost a task wake-up, a message dict, the server's own framing of the same text for each
connection (a WebSocket frame, an HTTP chunk) and a wait for the transport; a thousand viewers pay
that a thousand times per message. As `websockets.broadcast()` does, the bridge instead builds the
wire bytes once and writes them to each transport in one synchronous pass, while the transport
keeps up. The same bytes are right for every connection:
- a server's WebSocket frames are never masked (RFC 6455 §5.1), and a frame without RSV1 is an
  uncompressed message even where permessage-deflate was negotiated (RFC 7692 §6), so the
  connection's compression state is not involved;
- an HTTP/1.1 chunk is its length in hex, CRLF, the bytes, CRLF, whatever the connection.

uvicorn offers no such handle through ASGI, so the bridge's own protocol classes put one in the
scope's `extensions` (ASGI's place for server extras) under `agora.frames`: `EdgeWebSocketProtocol`
(uvicorn's websockets sans-I/O implementation) and gateway/edge.py's HTTP protocol. A sink answers
`writable()` only while the connection is open and its transport is not paused (uvicorn pauses at
its high-water mark); otherwise the feed queues the frames and its writer sends them through ASGI,
with ASGI's flow control, until the transport keeps up again. Under any other server there is no
sink and every frame goes through ASGI.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

EXTENSION = "agora.frames"
WEBSOCKET_TEXT, HTTP_CHUNK = "ws-text", "http-chunk"


def wire(kind: str, data: bytes) -> bytes:
    """`data` as it goes on the wire: a WebSocket text frame, or an HTTP/1.1 chunk."""
    if kind == WEBSOCKET_TEXT:
        return Frame(Opcode.TEXT, data).serialize(mask=False)
    return b"%x\r\n" % len(data) + data + b"\r\n"


class WebSocketSink:
    """Frames straight to an open WebSocket connection's transport."""

    kind = WEBSOCKET_TEXT
    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol):
        self._protocol = protocol

    def writable(self) -> bool:
        p = self._protocol
        return (p.handshake_complete and p.initial_response is None and not p.close_sent
                and not p.disconnected and p.writable.is_set() and not p.transport.is_closing())

    def write(self, frame: bytes) -> None:
        self._protocol.transport.write(frame)

    def abort(self) -> None:
        """Close the connection now, dropping what its transport still holds."""
        self._protocol.transport.abort()


class HttpChunkSink:
    """Chunks straight to a streaming (chunked) HTTP/1.1 response's transport."""

    kind = HTTP_CHUNK
    __slots__ = ("_cycle",)

    def __init__(self, cycle: Any):
        self._cycle = cycle  # uvicorn's RequestResponseCycle of this request (not a later one's)

    def writable(self) -> bool:
        c = self._cycle
        return (c.response_started and c.chunked_encoding and not c.response_complete
                and not c.disconnected and not c.flow.write_paused and not c.transport.is_closing())

    def write(self, frame: bytes) -> None:
        self._cycle.transport.write(frame)

    def abort(self) -> None:
        """Close the connection now, dropping what its transport still holds."""
        self._cycle.transport.abort()


class EdgeWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with a direct sink in the scope's extensions."""

    async def run_asgi(self) -> None:
        self.scope.setdefault("extensions", {})[EXTENSION] = WebSocketSink(self)  # type: ignore[index]
        await super().run_asgi()


def sink_of(scope: dict[str, Any]) -> WebSocketSink | HttpChunkSink | None:
    extensions = scope.get("extensions") or {}
    return extensions.get(EXTENSION)
