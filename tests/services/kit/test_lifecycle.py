"""ServiceSpec's parts: the server starts stores before the port answers, then the relay, the
workers and the consumers, and says SERVING only then; it stops them in reverse after the drain, and
the stores close last."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.health import LIVENESS
from services.kit.server import DomainServer
from tests.services.kit import probe_service


class Recorder:
    def __init__(self) -> None:
        self.steps: list[str] = []


class Store:
    def __init__(self, log: Recorder, name: str) -> None:
        self.log, self.name = log, name

    async def start(self) -> None:
        self.log.steps.append(f"start {self.name}")

    async def close(self) -> None:
        self.log.steps.append(f"close {self.name}")


class Part:
    def __init__(self, log: Recorder, name: str, *, fail_stop: bool = False) -> None:
        self.log, self.name, self.fail_stop = log, name, fail_stop

    async def start(self) -> None:
        self.log.steps.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.steps.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("a part that fails to stop does not keep the others running")


class Subscription:
    def __init__(self, log: Recorder, name: str) -> None:
        self.log, self.name = log, name

    async def cancel(self) -> None:
        self.log.steps.append(f"cancel {self.name}")


class Consumer:
    def __init__(self, log: Recorder, name: str) -> None:
        self.log, self.name = log, name
        self.bus = None

    async def subscribe(self, bus) -> Subscription:
        self.bus = bus
        self.log.steps.append(f"subscribe {self.name}")
        return Subscription(self.log, self.name)


async def test_parts_start_in_order_and_stop_in_reverse():
    log = Recorder()
    bus = object()
    consumer = Consumer(log, "consumer")

    async def extra_start() -> None:
        log.steps.append("on_start")

    async def extra_stop() -> None:
        log.steps.append("on_stop")

    spec = dataclasses.replace(
        probe_service.spec(),
        stores=[Store(log, "store-a"), Store(log, "store-b")],
        relay=Part(log, "relay"), workers=[Part(log, "clock", fail_stop=True), Part(log, "board")],
        consumers=[consumer], bus=bus, on_start=[extra_start], on_stop=[extra_stop])
    server = DomainServer(spec, host="127.0.0.1", port=0, grace=0.2)
    serve = server.server.start

    async def serving() -> None:  # the gRPC server takes calls from here on
        log.steps.append("serving")
        await serve()

    server.server.start = serving
    ready = server.health.start

    async def readiness() -> None:
        log.steps.append("ready")
        await ready()

    server.health.start = readiness
    await server.start()
    assert consumer.bus is bus
    assert log.steps == ["start store-a", "start store-b", "serving", "start relay", "start clock",
                         "start board", "subscribe consumer", "on_start", "ready"]
    log.steps.clear()
    await server.stop()
    assert log.steps == ["on_stop", "cancel consumer", "stop board", "stop clock", "stop relay",
                         "close store-b", "close store-a"]


async def test_not_ready_until_the_consumers_are_bound():
    """A replica that said SERVING before its consumers were bound would miss what another replica
    published in between: while the consumer subscribes, the port answers liveness but not readiness."""
    spec = probe_service.spec()
    seen: dict[str, int] = {}

    class Checking(Consumer):
        async def subscribe(self, bus) -> Subscription:
            async with grpc.aio.insecure_channel(server.address) as channel:
                health = health_pb2_grpc.HealthStub(channel)
                for name in (LIVENESS, spec.domain.service):
                    try:
                        seen[name] = (await health.Check(health_pb2.HealthCheckRequest(service=name),
                                                         timeout=5)).status
                    except grpc.aio.AioRpcError as exc:
                        seen[name] = exc.code()
            return await super().subscribe(bus)

    server = DomainServer(dataclasses.replace(spec, consumers=[Checking(Recorder(), "c")], bus=object()),
                          host="127.0.0.1", port=0, grace=0.2)
    await server.start()
    try:
        assert seen[LIVENESS] == health_pb2.HealthCheckResponse.SERVING
        assert seen[spec.domain.service] != health_pb2.HealthCheckResponse.SERVING
        async with grpc.aio.insecure_channel(server.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=spec.domain.service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.stop()


def test_consumers_without_a_bus_are_refused_at_build_time():
    log = Recorder()
    with pytest.raises(ValueError, match="consumers need the bus"):
        dataclasses.replace(probe_service.spec(), consumers=[Consumer(log, "orphan")])
