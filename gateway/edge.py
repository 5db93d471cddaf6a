"""Connection-level limits at the bridge's edge, below the ASGI app: request-head size (431), the time a
connection gets to send its request head (408), and open connections per client address and in all.

uvicorn serves HTTP/1.1 with httptools (llhttp), which has no header-size limit at all: it keeps
concatenating one header's bytes until the line ends, so a 64 MiB header costs 64 MiB of RSS before
the app sees anything. h11 has one (`h11_max_incomplete_event_size`) but answers 400, not 431, and is
the pure-Python parser (the bridge's hot path is measured against the httptools one). uvicorn has no
header-read timeout either: its keep-alive timer runs only after a response, so a connection that
opens and sends half a request line stays open forever. `limit_concurrency` answers 503 only once
a request's headers are complete, counts running tasks (every SSE stream) with connections, and
knows nothing of addresses. So `EdgeProtocol` is uvicorn's own `HttpToolsProtocol` with these checks
around `data_received`; everything after the request head is uvicorn's code, unchanged.

The head is measured on the raw bytes before the parser keeps them: from the first byte of a
request to the blank line that ends its headers. Past the limit the bridge answers 431 with
`Connection: close`, stops reading into the parser, drains (and drops) what the client still sends
for a moment, so the client reads the answer rather than a reset, then closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway import direct

log = logging.getLogger("agora.gateway.edge")

_HEAD_END = b"\r\n\r\n"
_LINGER_SECONDS = 2.0  # how long a refused connection's unread bytes are drained before closing
_LINGER_BYTES = 4 << 20


@dataclass(frozen=True)
class EdgeLimits:
    """0 (or None) turns a cap off."""

    max_header_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    max_connections: int = 10_000
    max_connections_per_client: int = 1024


class TrustedProxies:
    """Addresses and networks ("10.0.0.0/8", "127.0.0.1", "*") whose forwarding headers are believed."""

    def __init__(self, entries: Iterable[str] = ()):
        self.any = False
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.any = True
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"AGORA_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network") from None

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        return cls(text.split(","))

    def __bool__(self) -> bool:
        return self.any or bool(self.networks)

    def __contains__(self, host: object) -> bool:
        if self.any:
            return True
        if not isinstance(host, str) or not self.networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    def uvicorn_value(self) -> str:
        """What uvicorn's `forwarded_allow_ips` takes (it accepts addresses, CIDRs and "*")."""
        return "*" if self.any else ",".join(str(n) for n in self.networks)


class ConnectionCounts:
    """Open connections per client address, shared by every connection of one server."""

    def __init__(self) -> None:
        self.total = 0
        self.by_client: dict[str, int] = {}

    def add(self, host: str) -> None:
        self.total += 1
        self.by_client[host] = self.by_client.get(host, 0) + 1

    def remove(self, host: str) -> None:
        self.total -= 1
        left = self.by_client.get(host, 1) - 1
        if left > 0:
            self.by_client[host] = left
        else:
            self.by_client.pop(host, None)


def _response(status: int, reason: str, code: int, message: str,
              extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"code": code, "message": message, "details": []}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
             "connection: close", *(f"{k}: {v}" for k, v in (extra or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the edge limits; `edge_protocol()` makes a configured subclass."""

    limits: EdgeLimits = EdgeLimits()
    counts: ConnectionCounts
    exempt: TrustedProxies = TrustedProxies()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._peer: str | None = None  # counted under this address while open
        self._refusal: bytes | None = None  # answer the first request with this, then close
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # the next bytes belong to a request head
        self._head_bytes = 0
        self._tail = b""  # last 3 bytes of the head so far: the blank line may straddle reads
        self._refused = False  # answered by the edge: the parser's further callbacks are ignored
        self._lingering = 0  # > 0: bytes still drained (and dropped) before closing

    # -- connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        limits, counts = self.limits, self.counts
        if limits.max_connections and counts.total >= limits.max_connections:
            self._refusal = _response(503, "Service Unavailable", 14, "the bridge is at its connection limit",
                                      {"retry-after": "1"})
        elif (limits.max_connections_per_client and host not in self.exempt
              and counts.by_client.get(host, 0) >= limits.max_connections_per_client):
            self._refusal = _response(
                429, "Too Many Requests", 8,
                f"more than {limits.max_connections_per_client} open connections from this address",
                {"retry-after": "1"})
        else:
            self._peer = host
            counts.add(host)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _release(self) -> None:
        if self._peer is not None:
            self.counts.remove(self._peer)
            self._peer = None

    def handle_websocket_upgrade(self) -> None:
        if self._refused:
            return
        super().handle_websocket_upgrade()
        self._cancel_head_timer()
        # The WebSocket protocol owns the transport from here; it still counts until it closes.
        ws = self.transport.get_protocol()
        if ws is not self and self._peer is not None:
            lost = ws.connection_lost

            def connection_lost(exc: Exception | None) -> None:
                try:
                    lost(exc)
                finally:
                    self._release()

            ws.connection_lost = connection_lost  # type: ignore[method-assign]

    # -- reading

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._lingering -= len(data)  # refused: drop what the client still sends
            if self._lingering <= 0:
                self.transport.close()
            return
        if self._in_head:
            end = (self._tail + data).find(_HEAD_END)
            size = self._head_bytes + (len(data) if end < 0 else end + len(_HEAD_END) - len(self._tail))
            limit = self.limits.max_header_bytes
            if limit and size > limit:
                self._refuse(_response(431, "Request Header Fields Too Large", 8,
                                       f"request head exceeds {limit} bytes"))
                return
            if end < 0:
                self._head_bytes = size
                self._tail = (self._tail + data)[-3:]
        super().data_received(data)
        if (self._head_timer is None and self._in_head and self.timeout_keep_alive_task is None
                and not self._answering() and self.transport.get_protocol() is self
                and not self.transport.is_closing()):
            self._arm_head_timer()  # bytes between requests that began no message (stray CRLFs)

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._head_bytes, self._tail = 0, b""
        self._cancel_head_timer()
        if self._refusal is not None:
            self._refuse(self._refusal)
            return
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # a request, not an upgrade
            self.scope.setdefault("extensions", {})[direct.EXTENSION] = direct.HttpChunkSink(cycle)

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._in_head = True  # a pipelined request may follow

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._in_head = True
        if self._head_bytes or self._tail:
            self._arm_head_timer()  # a pipelined head began while it answered: its clock starts now

    # -- refusing

    def _refuse(self, response: bytes) -> None:
        """Answer, stop parsing, drain what is in flight for a moment, close."""
        self._cancel_head_timer()
        self._unset_keepalive_if_required()
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()  # FIN after the answer; reading goes on until we close
            self._lingering = _LINGER_BYTES
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    # -- the head timer

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        if self.limits.header_timeout:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _answering(self) -> bool:
        """A response is still going out (a stream can last hours): no head timer cuts it."""
        return self.cycle is not None and not self.cycle.response_complete

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self or self._answering():
            return
        if self._head_bytes or self._tail:
            self._refuse(_response(408, "Request Timeout", 4,
                                   f"request head not complete within {self.limits.header_timeout:g} s"))
        else:
            self.transport.close()  # nothing asked: close quietly, as an idle keep-alive closes


def edge_protocol(limits: EdgeLimits, exempt: TrustedProxies | None = None) -> type[EdgeProtocol]:
    """A protocol class for one uvicorn server: its own connection counts, these limits."""
    return type("ConfiguredEdgeProtocol", (EdgeProtocol,),
                {"limits": limits, "counts": ConnectionCounts(), "exempt": exempt or TrustedProxies()})


def metadata_size(metadata: Iterable[tuple[str, str | bytes]]) -> int:
    """Bytes of gRPC metadata as HTTP/2 (and gRPC's max_metadata_size) count them: name + value + 32."""
    return sum(len(k) + len(v) + 32 for k, v in metadata)
