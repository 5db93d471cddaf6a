"""grpc.health.v1 status that follows the service's dependencies (stores, bus), probed periodically."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2

log = logging.getLogger("agora.health")

Probe = Callable[[], Awaitable[bool]]
# Kubernetes liveness asks for this name: SERVING while the process runs, whatever its
# dependencies say (a database outage must not restart every pod; readiness handles that).
LIVENESS = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthReporter:
    """Owns one server's health servicer: SERVING only while every dependency probe answers."""

    def __init__(self, service_names: list[str], probes: Mapping[str, Probe], *, interval: float = 1.0,
                 probe_timeout: float = 2.0) -> None:
        self.servicer = health_async.HealthServicer()
        self.service_names = ["", *service_names]
        self.probes = dict(probes)
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.failing: set[str] = set()
        self._task: asyncio.Task | None = None
        self._stopping = False

    async def _probe(self, name: str, probe: Probe) -> bool:
        try:
            return bool(await asyncio.wait_for(probe(), self.probe_timeout))
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not serving"
            log.debug("probe %s failed: %s", name, exc)
            return False

    async def check_once(self) -> bool:
        names = list(self.probes)
        results = await asyncio.gather(*(self._probe(n, self.probes[n]) for n in names))
        failing = {n for n, ok in zip(names, results) if not ok}
        if failing != self.failing:
            if failing:
                log.warning("dependencies not answering: %s", ", ".join(sorted(failing)))
            else:
                log.info("all dependencies answer again")
        self.failing = failing
        if not self._stopping:
            status = NOT_SERVING if failing else SERVING
            for name in self.service_names:
                await self.servicer.set(name, status)
        return not failing

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check_once()

    async def alive(self) -> None:
        """Liveness answers SERVING from the moment the port does, before the service is ready."""
        await self.servicer.set(LIVENESS, SERVING)

    async def start(self) -> None:
        """Readiness: called once every part of the service runs (consumers bound, relay started), so
        SERVING means an event published anywhere from now on reaches this process."""
        await self.alive()
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name="health-probes")

    async def shutting_down(self) -> None:
        """Stop advertising: load balancers and probes take the server out before it drains."""
        self._stopping = True
        if self._task:
            self._task.cancel()
        await self.servicer.enter_graceful_shutdown()


def bus_probe(bus) -> Probe:
    """The dependency probe of a domain that publishes or consumes events: True while its bus can
    publish and its subscriptions consume (EventBus.healthy)."""
    async def bus_answers() -> bool:
        return bus.healthy()

    return bus_answers
