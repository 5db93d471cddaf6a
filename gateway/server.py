"""Run the bridge with uvicorn inside the caller's asyncio loop, so one launcher process hosts it all."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
from collections.abc import Mapping
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.direct import EdgeWebSocketProtocol
from gateway.edge import EdgeLimits, TrustedProxies, edge_protocol


def make_gateway_server(
    descriptor_set: bytes,
    upstreams: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    log_level: str = "warning",
    graceful_shutdown: float = 5.0,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ws_max_size: int = 1 << 20,
    edge_limits: EdgeLimits | None = None,
    trusted_proxies: TrustedProxies | str = "",
    idle_timeout: float = 5.0,
    worker: int | None = None,
    **app_options: Any,
) -> uvicorn.Server:
    """A configured uvicorn.Server; `await server.serve()` runs it, `server.should_exit = True` stops it.

    With `ssl_certfile` and `ssl_keyfile` (PEM) it serves HTTPS/WSS only. `ws_max_size` is the largest
    WebSocket message the protocol layer reads before closing with 1009. `edge_limits` bound the
    request head (431), the time to send it (408) and open connections (see gateway/edge.py);
    `idle_timeout` closes idle keep-alive connections. `trusted_proxies` (addresses/CIDRs, comma-
    separated) are the only peers whose X-Forwarded-For / X-Forwarded-Proto uvicorn believes; with
    none, the client address every limit keys on is the TCP peer's. `worker` (one of several bridge
    processes on one port, gateway/workers.py) puts `x-agora-worker: <index>` on every response.
    """
    proxies = (trusted_proxies if isinstance(trusted_proxies, TrustedProxies)
               else TrustedProxies.parse(trusted_proxies))
    app = create_app(descriptor_set, upstreams, **app_options)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # Open streams must not hold shutdown forever; uvicorn cancels them after this grace.
        timeout_graceful_shutdown=graceful_shutdown,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_max_size=ws_max_size,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        http=edge_protocol(edge_limits or EdgeLimits(), proxies),
        ws=EdgeWebSocketProtocol,  # uvicorn's sans-I/O WebSockets, with a direct sink (direct.py)
        timeout_keep_alive=idle_timeout,  # type: ignore[arg-type]  # a float works: it goes to call_later
        # uvicorn's default trusts 127.0.0.1 (or $FORWARDED_ALLOW_IPS): a local client could then
        # name any address in X-Forwarded-For and walk past the per-address limits.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies.uvicorn_value(),
        # uvicorn's own default-headers option, so neither the app nor a route changes; the index
        # (0..N-1) says which process answered without telling clients its pid.
        headers=[("x-agora-worker", str(worker))] if worker is not None else None,
    )
    return uvicorn.Server(config)


async def serve_gateway(
    descriptor_set: bytes,
    upstreams: Mapping[str, str],
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    ready_event: asyncio.Event | None = None,
    stop_event: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    extra_ports: tuple[int, ...] = (),
    reuse_port: bool = False,
    **options: Any,
) -> None:
    """Serve until `stop_event` is set or this task is cancelled; `ready_event` is set once listening.

    A pre-bound `sock` must be created with proto IPPROTO_TCP: asyncio turns on TCP_NODELAY only for
    sockets that say so, and without it each response waits ~40 ms on Nagle and delayed ACKs.
    `extra_ports` are more ports the same app answers on (the seed systems' own, say). `reuse_port`
    binds every port with SO_REUSEPORT, so several bridge processes share them (gateway/workers.py).
    """
    server = make_gateway_server(descriptor_set, upstreams, host, port, **options)
    sockets = None
    if sock is not None or extra_ports or reuse_port:
        sockets = []
        try:
            sockets.append(sock or listening_socket(host, port, reuse_port=reuse_port))
            sockets.extend(listening_socket(host, p, reuse_port=reuse_port) for p in extra_ports)
        except OSError:
            for s in sockets:
                s.close()
            raise
    serving = asyncio.ensure_future(server.serve(sockets=sockets))
    waiters: list[asyncio.Future] = []
    try:
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if ready_event is not None and server.started:
            ready_event.set()
        if stop_event is not None:
            stopper = asyncio.ensure_future(stop_event.wait())
            waiters.append(stopper)
            await asyncio.wait({serving, stopper}, return_when=asyncio.FIRST_COMPLETED)
            server.should_exit = True
        await serving
    except asyncio.CancelledError:
        server.should_exit = True
        with contextlib.suppress(BaseException):
            await serving
        raise
    finally:
        for w in waiters:
            w.cancel()


def reuse_port_supported() -> bool:
    """Whether this platform has SO_REUSEPORT with the kernel spreading connections among the
    listeners (Linux 3.9+; the BSDs and macOS have the option but hand every connection to one)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to host:port and not listening (IPPROTO_TCP, so asyncio sets TCP_NODELAY
    on its connections). With `reuse_port`, SO_REUSEPORT: other processes can bind the same port."""
    if reuse_port and not reuse_port_supported():
        raise OSError(errno.EOPNOTSUPP, f"several bridge processes on one port need SO_REUSEPORT with "
                      f"load balancing (Linux); {sys.platform} lacks it: run one worker per port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = (" (a process that is not a bridge worker holds it: SO_REUSEPORT shares a port only "
                "among sockets that all set it)" if reuse_port and exc.errno == errno.EADDRINUSE else "")
        raise OSError(exc.errno, f"the bridge cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    return sock


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket (IPPROTO_TCP, so asyncio sets TCP_NODELAY on its connections); with
    `reuse_port`, SO_REUSEPORT, so every bridge worker listens on the same port and the kernel spreads
    new connections among them (Linux only: elsewhere this raises OSError saying so)."""
    sock = bound_socket(host, port, reuse_port=reuse_port)
    sock.listen(1024)
    sock.setblocking(False)
    return sock
