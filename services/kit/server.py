"""The grpc.aio server every domain runs on: interceptors, health, reflection, graceful drain.

A domain describes itself as a `ServiceSpec`; `DomainServer` turns that into a listening server.
Shutdown is the grpc example's few lines: stop advertising health, tell live streams to end
with UNAVAILABLE so clients reconnect elsewhere, `server.stop(grace)` to drain unary calls.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.kit.auth import SessionResolver
from services.kit.health import HealthReporter, Probe
from services.kit.interceptors import ServiceInterceptor, access_table
from services.kit.registry import Domain
from services.kit.revocation import OpenStreams

log = logging.getLogger("agora.server")

Hook = Callable[[], Awaitable[None]]


class Store(Protocol):
    """A store adapter as the server runs it: `start()` connects and migrates, `close()` lets go."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...


class Part(Protocol):
    """Something that runs beside the servicer: an outbox relay, a clock, a live board."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class Subscription(Protocol):
    async def cancel(self) -> None: ...


class Consumer(Protocol):
    """An event consumer: `subscribe(bus)` starts consuming and returns what cancels it."""

    async def subscribe(self, bus: Any) -> Subscription: ...


@dataclass
class ServiceSpec:
    """What a domain hands the kit: its servicer, what its health depends on, what runs beside it.

    `build()` only names the parts; the server runs them, in this order, and stops them in reverse:
    stores start (before the port answers), then the relay, the workers, the consumers, `on_start`,
    and only then does health say SERVING (liveness answers from the start); on stop, after the
    drain, `on_stop`, the consumers, the workers, the relay, then the stores close."""

    domain: Domain
    register: Callable[[grpc.aio.Server], None]
    probes: Mapping[str, Probe] = field(default_factory=dict)
    stores: Sequence[Store] = ()
    relay: Part | None = None  # the outbox relay (services.kit.bus.outbox.outbox_relay)
    workers: Sequence[Part] = ()
    consumers: Sequence[Consumer] = ()
    bus: Any = None  # what the consumers subscribe to
    on_start: list[Hook] = field(default_factory=list)  # anything else, after the parts
    on_stop: list[Hook] = field(default_factory=list)  # anything else, before the parts (after the drain)
    sessions: SessionResolver | None = None  # resolves `authorization` metadata to a Caller

    def __post_init__(self) -> None:
        if self.consumers and self.bus is None:
            raise ValueError(f"{self.domain.name}: consumers need the bus they subscribe to")

    @property
    def parts(self) -> list[Part]:
        return ([self.relay] if self.relay is not None else []) + list(self.workers)


_settled = False


def settle_heap() -> None:
    """Once a process's servers have started (`agora up`, `agora serve`): keep what start-up
    allocated out of the cyclic collector's sight (gc.freeze) and run the collector less often.
    Once per process; tests that start servers in their own process do not call it.

    A streaming server holds thousands of long-lived futures, tasks and frames. With the default
    thresholds (700, 10, 10) the collector walked them many times a second: 11-13% of the polls
    server's time with 1,000 watchers connected (py-spy --native). Reference counting still frees
    almost everything at once; the collector is only for cycles, which are rare on these paths."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Lifecycle:
    """Shared by a process's servers: streams watch `stopping` and end with a status on shutdown,
    and are tracked in `streams` by session, so a sign-out can end them (services/kit/revocation.py)."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.service_key = ""  # the process's service credential (Runtime sets it): what internal calls send
        self.streams = OpenStreams()


class DomainServer:
    def __init__(self, spec: ServiceSpec, *, host: str, port: int, grace: float,
                 health_interval: float = 1.0, max_message_bytes: int = 4 * 1024 * 1024,
                 lifecycle: Lifecycle | None = None, credentials: grpc.ServerCredentials | None = None,
                 service_api_key: str = "") -> None:
        self.spec = spec
        self.grace = grace
        self._subscriptions: list[Subscription] = []
        self.lifecycle = lifecycle or Lifecycle()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            # Keepalive: find dead peers of long-lived streams within ~30 s.
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ]
        interceptor = ServiceInterceptor(self.lifecycle.stopping, spec.sessions,
                                         service_api_key or self.lifecycle.service_key,
                                         access=access_table(spec.domain.service),
                                         streams=self.lifecycle.streams)
        self.server = grpc.aio.server(interceptors=[interceptor], options=options)
        spec.register(self.server)
        self.health = HealthReporter([spec.domain.service], spec.probes, interval=health_interval)
        health_pb2_grpc.add_HealthServicer_to_server(self.health.servicer, self.server)
        reflection.enable_server_reflection(
            [spec.domain.service, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.address = f"{host}:{port}"
        if credentials is not None:  # TLS only: no plaintext port beside it
            self.port = self.server.add_secure_port(self.address, credentials)
        else:
            self.port = self.server.add_insecure_port(self.address)
        if self.port == 0:
            raise RuntimeError(f"cannot listen on {self.address} (in use?)")
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        spec = self.spec
        for store in spec.stores:
            await store.start()
        await self.server.start()
        await self.health.alive()
        for part in spec.parts:
            await part.start()
        for consumer in spec.consumers:
            self._subscriptions.append(await consumer.subscribe(spec.bus))
        for hook in spec.on_start:
            await hook()
        # Ready only now: a replica that said SERVING before its consumers were bound would miss what
        # another replica published in between (chat's fan-out lost a join that way).
        await self.health.start()
        log.info("serving", extra={"service": spec.domain.name, "address": self.address})

    async def stop(self) -> None:
        await self.health.shutting_down()
        self.lifecycle.stopping.set()
        await self.server.stop(self.grace)
        spec = self.spec
        steps: list[Hook] = [*spec.on_stop, *(s.cancel for s in reversed(self._subscriptions)),
                             *(p.stop for p in reversed(spec.parts)),
                             *(s.close for s in reversed(spec.stores))]
        self._subscriptions.clear()
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("stopping %s failed", spec.domain.name)
        log.info("stopped", extra={"service": spec.domain.name})

    async def wait(self) -> None:
        await self.server.wait_for_termination()
