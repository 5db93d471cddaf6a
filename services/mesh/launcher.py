"""Start the mesh: `agora up` (every domain and the bridge in one process) and `agora serve X` (one).

The composition root: the one module that wires the kit, the domains and the bridge together.

Both run on one asyncio loop and stop the same way: SIGTERM or Ctrl-C sets an event, every
server drains, the process exits 0. `agora serve gateway --workers N` (AGORA_GATEWAY_WORKERS) with
N > 1 is a supervisor of N such bridge processes on one SO_REUSEPORT port (gateway/workers.py);
`agora up` always hosts one bridge in its own loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import grpc

from services.kit import logs
from services.kit.config import Settings
from services.kit.interceptors import DeadlinePropagation
from services.kit.registry import DOMAINS, Domain
from services.kit.server import DomainServer, Lifecycle, ServiceSpec, settle_heap
from services.kit.tls import channel_credentials, server_credentials

log = logging.getLogger("agora.launcher")


@dataclass
class Runtime:
    """What the process gives each domain it hosts: settings, the bus, channels to other domains."""

    settings: Settings
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    _bus: object | None = None
    _bus_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _channels: dict[str, grpc.aio.Channel] = field(default_factory=dict)
    _sessions: object | None = None

    def __post_init__(self) -> None:
        # Internal calls are never anonymous: with no AGORA_SERVICE_API_KEY configured, this process
        # makes a random credential of its own, which its servers accept and its channels send. (A
        # domain served alone needs the configured one to reach, or be reached by, other processes.)
        if not self.settings.service_api_key:
            import dataclasses
            import secrets

            self.settings = dataclasses.replace(self.settings, service_api_key=secrets.token_urlsafe(32))
            self.generated_key = True
        else:
            self.generated_key = False
        self.lifecycle.service_key = self.settings.service_api_key

    async def bus(self):
        """The process's event bus, opened on first use (a domain that never publishes opens none)."""
        async with self._bus_lock:
            if self._bus is None:
                self._bus = await open_bus(self.settings)
        return self._bus

    @property
    def bus_opened(self) -> bool:
        return self._bus is not None

    async def bus_healthy(self) -> bool:
        return self._bus is not None and self._bus.healthy()

    def sessions(self):
        """Token -> Caller through identity's CheckSession, cached for two seconds (dropped at once
        when this process hears of a revocation: `listen_for_revocations`)."""
        from services.kit.auth import CachedSessions, IdentitySessions

        if self._sessions is None:
            self._sessions = CachedSessions(IdentitySessions(self.channel("identity")))
        return self._sessions

    def channel(self, domain: str) -> grpc.aio.Channel:
        """One persistent channel per upstream domain; downstream calls inherit the caller's deadline."""
        if domain not in self._channels:
            options = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 10_000)]
            credentials = channel_credentials(self.settings)
            if credentials is not None:
                self._channels[domain] = grpc.aio.secure_channel(
                    self.settings.target(domain), credentials,
                    interceptors=[DeadlinePropagation(self.settings.service_api_key)], options=options
                )
            else:
                self._channels[domain] = grpc.aio.insecure_channel(
                    self.settings.target(domain),
                    interceptors=[DeadlinePropagation(self.settings.service_api_key)], options=options
                )
        return self._channels[domain]

    async def listen_for_revocations(self):
        """This process's one consumer of `identity.session.revoked`: it ends the session's streams
        in every server here and drops it from the session cache (services/kit/revocation.py)."""
        from services.kit.revocation import RevocationListener

        listener = RevocationListener(await self.bus(), self.lifecycle.streams,
                                      lambda: [self._sessions] if self._sessions is not None else [])
        await listener.start()
        return listener

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        if self._bus is not None:
            await self._bus.close()
            self._bus = None


Builder = Callable[[Runtime], Awaitable[ServiceSpec]]


def builder_for(domain: Domain) -> Builder:
    """The domain's `services.<name>.service.build`."""
    return importlib.import_module(f"{domain.module}.service").build


async def open_bus(settings: Settings):
    from services.kit.bus import open_bus as open_event_bus

    bus = open_event_bus(settings)
    await bus.start()
    return bus


class RunningGateway:
    """The bridge serving in this loop (outside gateway/, only the composition root starts it)."""

    def __init__(self, task: asyncio.Task, stop: asyncio.Event) -> None:
        self.task, self._stop = task, stop

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(self.task, 10)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            self.task.cancel()


# The seed systems' own ports (AGORA_SEED_PORTS): GoBid's API, and the three services of the
# three-database shop (storage, orders, log). Seeds 000 and 003 used 8080, the bridge's own.
SEED_PORTS = (3080, 8081, 8082, 8083)


async def start_gateway(settings: Settings, worker=None) -> RunningGateway:
    """The bridge on settings.host:http_port; as `worker` (a gateway.workers.Worker) it binds with
    SO_REUSEPORT, next to the other workers, and says which one answered (x-agora-worker)."""
    from importlib import resources

    from gateway.server import serve_gateway

    descriptors = resources.files("agora").joinpath("descriptors.binpb").read_bytes()
    from gateway.edge import EdgeLimits
    from gateway.limits import ClientLimits, FrameLimits, Rate

    upstreams = {d.service: settings.target(d.name) for d in DOMAINS.values()}
    limits = ClientLimits(login=Rate(settings.login_rate / 60, max(1.0, settings.login_rate)),
                          writes=Rate(settings.write_rate, 4 * settings.write_rate))
    frames = FrameLimits(max_frame_bytes=settings.max_message_bytes,
                         frames=Rate(settings.ws_frame_rate, 2 * settings.ws_frame_rate))
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_gateway(descriptors, upstreams, settings.host, settings.http_port,
                      ready_event=ready, stop_event=stop,
                      extra_ports=SEED_PORTS if settings.seed_ports else (),
                      csrf_key=settings.csrf_key.encode() or None,
                      graceful_shutdown=settings.shutdown_grace, client_limits=limits, frame_limits=frames,
                      channel_credentials=channel_credentials(settings),
                      ssl_certfile=settings.tls_cert or None, ssl_keyfile=settings.tls_key or None,
                      ws_max_size=settings.max_message_bytes,
                      edge_limits=EdgeLimits(max_header_bytes=settings.http_max_header_bytes,
                                             header_timeout=settings.http_header_timeout,
                                             max_connections=settings.http_max_connections,
                                             max_connections_per_client=settings.http_max_connections_per_client),
                      trusted_proxies=settings.trusted_proxies, idle_timeout=settings.http_idle_timeout,
                      max_metadata_bytes=settings.http_max_metadata_bytes,
                      edge_key=settings.service_api_key,
                      reuse_port=worker is not None, worker=None if worker is None else worker.index),
        name="gateway",
    )
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not ready.is_set():
        if task.done() and task.exception():
            raise task.exception()
        raise RuntimeError(f"the bridge could not listen on {settings.host}:{settings.http_port} (in use?)")
    return RunningGateway(task, stop)


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests drive it directly)
            pass


async def run(settings: Settings, domains: list[tuple[Domain, Builder]], *, gateway: bool,
              stop: asyncio.Event | None = None, announce: Callable[[str], None] = print,
              metrics_port: int | None = None, worker=None) -> int:
    """Serve `domains` (and the bridge if asked) until `stop` is set or a signal arrives; with
    `metrics_port`, /metrics for the whole process on that port (the bridge has its own /metrics).
    As a bridge `worker` (gateway.workers.Worker) it tells the supervisor once it serves."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    runtime = Runtime(settings)
    settings = runtime.settings  # with the process's own service credential when none was configured
    if runtime.generated_key and not gateway:
        log.warning("AGORA_SERVICE_API_KEY is not set: this process made a credential of its own, so its "
                    "internal methods refuse calls from other processes; set the same key on every service")
    servers: list[DomainServer] = []
    bridge = None
    scrape = None
    revocations = None
    try:
        if metrics_port is not None:
            from services.kit.telemetry.endpoint import MetricsEndpoint

            # a default port that is taken is no reason not to start; a configured one is
            scrape = MetricsEndpoint(settings.host, metrics_port, fallback=settings.metrics_port == 0)
        for domain, build in domains:
            spec = await build(runtime)
            if runtime.bus_opened and "bus" not in spec.probes:
                # a domain that uses the bus depends on it
                spec.probes = {**spec.probes, "bus": runtime.bus_healthy}
            port = (settings.grpc_port if (settings.grpc_port and len(domains) == 1)
                    else domain.port + settings.port_offset)
            server = DomainServer(
                spec, host=settings.host, port=port, grace=settings.shutdown_grace,
                health_interval=settings.health_interval, max_message_bytes=settings.max_message_bytes,
                lifecycle=runtime.lifecycle, credentials=server_credentials(settings),
                service_api_key=settings.service_api_key,
            )
            await server.start()
            servers.append(server)
            announce(f"{domain.name:<14} grpc  {server.address:<22} {domain.service}")
        if servers:
            revocations = await runtime.listen_for_revocations()
        if gateway:
            bridge = await start_gateway(settings, worker)
            announce(f"{'gateway':<14} http  http://{settings.host}:{settings.http_port:<9} "
                     "REST, SSE, WebSocket, /docs")
        if scrape is not None:
            announce(f"{'metrics':<14} http  {scrape.url:<22} Prometheus")
        settle_heap()
        announce("ready; Ctrl-C or SIGTERM stops")
        if worker is not None:
            worker.ready()
        await stop.wait()
    finally:
        log.info("shutting down")
        if bridge is not None:
            await bridge.stop()
        await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)
        if revocations is not None:
            await revocations.stop()
        await runtime.close()
        if scrape is not None:
            scrape.close()
    return 0


def _run_process(settings: Settings, service_name: str, main: Coroutine[object, object, int]) -> int:
    """One process's life: tracing on if AGORA_OTLP_ENDPOINT says so (flushed at exit), then `main`."""
    from services.kit.telemetry import tracing

    tracing.configure(settings.otlp_endpoint, service_name, sample_ratio=settings.trace_sample_ratio)
    try:
        return asyncio.run(main)
    finally:
        tracing.uninstall()


def up(settings: Settings) -> int:
    logs.configure(settings.log_level, settings.log_format)
    return _run_process(settings, "agora", run(settings, [(d, builder_for(d)) for d in DOMAINS.values()],
                                               gateway=True, metrics_port=settings.metrics_port_for(None)))


def serve(target: str, settings: Settings, workers: int | None = None) -> int:
    """`workers` (default AGORA_GATEWAY_WORKERS) bridge processes for `gateway`; a domain is one."""
    logs.configure(settings.log_level, settings.log_format)
    if target == "gateway":  # /metrics is one of the bridge's routes
        count = workers or settings.gateway_workers
        if count > 1:
            return _serve_gateway_workers(settings, count)
        return _run_process(settings, "agora-gateway", run(settings, [], gateway=True))
    if workers is not None and workers > 1:
        print(f"--workers is for the bridge (`agora serve gateway`); run more {target} replicas instead",
              file=sys.stderr)
        return 2
    if target not in DOMAINS:
        print(f"unknown domain {target!r}; one of: gateway, {', '.join(DOMAINS)}", file=sys.stderr)
        return 2
    domain = DOMAINS[target]
    return _run_process(settings, f"agora-{target}",
                        run(settings, [(domain, builder_for(domain))], gateway=False,
                                                         metrics_port=settings.metrics_port_for(target)))


def _serve_gateway_workers(settings: Settings, count: int) -> int:
    """`count` bridge processes on one port under gateway/workers.py's supervisor."""
    import secrets

    from gateway.workers import WorkersFailed, supervise

    # What would otherwise be random per process must be one value for every worker: a CSRF cookie
    # signed by one worker is checked by another, and all send the same service credential.
    shared = {}
    if not settings.csrf_key:
        shared["csrf_key"] = secrets.token_urlsafe(32)
    if not settings.service_api_key:
        shared["service_api_key"] = secrets.token_urlsafe(32)
    settings = dataclasses.replace(settings, **shared)
    try:
        # the drain: uvicorn's grace for open streams, then RunningGateway.stop's 10 s and the channels
        return supervise(functools.partial(_gateway_worker, settings), count, host=settings.host,
                         port=settings.http_port, grace=settings.shutdown_grace + 15)
    except WorkersFailed as exc:
        print(f"agora serve gateway: {exc}", file=sys.stderr)
        return 1


def _gateway_worker(settings: Settings, worker) -> int:
    """One worker process of `_serve_gateway_workers` (spawned: configures its own logs, tracing)."""
    logs.configure(settings.log_level, settings.log_format)
    settings = dataclasses.replace(settings, http_port=worker.port)
    return _run_process(settings, "agora-gateway",
                        run(settings, [], gateway=True, worker=worker, announce=lambda _line: None))
