"""/metrics over HTTP for a gRPC process: prometheus-client's server on a thread of its own, so a
scrape never waits on (or delays) the event loop. The bridge serves the same registry as a route."""

from __future__ import annotations

import logging
import threading

from prometheus_client import start_http_server

log = logging.getLogger("agora.telemetry")


class MetricsEndpoint:
    """`fallback`: when `port` is taken (a default port, two replicas on one machine), serve on any
    free port instead of failing; the caller announces where."""

    def __init__(self, host: str, port: int, *, fallback: bool = False) -> None:
        try:
            self._server, self._thread = start_http_server(port, addr=host)
        except (OSError, OverflowError) as exc:
            if not fallback or port == 0:
                raise RuntimeError(f"cannot serve /metrics on {host}:{port} "
                                   f"({getattr(exc, 'strerror', exc)}); "
                                   "set AGORA_METRICS_PORT (-1 turns it off)") from None
            log.warning("/metrics port %d is taken; serving on a free port instead", port)
            self._server, self._thread = start_http_server(0, addr=host)
        self.host, self.port = host, self._server.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        server = self._server
        threading.Thread(target=server.shutdown, daemon=True).start()
        self._thread.join(2.0)
        server.server_close()
