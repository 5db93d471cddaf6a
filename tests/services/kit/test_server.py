"""The kit's server: error mapping, deadlines, reflection, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status.rpc_status import aio as rpc_status_aio

from services.kit.errors import field_violations
from services.kit.interceptors import DeadlinePropagation
from services.kit.server import DomainServer
from tests.services.kit import probe_service

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def probe():
    server = DomainServer(probe_service.spec(), host="127.0.0.1", port=0, grace=1.0)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    yield server, channel
    await channel.close()
    await server.stop()


def unary(channel: grpc.aio.Channel, name: str, **kw):
    return channel.unary_unary(f"/{probe_service.DOMAIN.service}/{name}", **kw)


async def test_unexpected_exception_is_internal_without_internals(probe):
    _, channel = probe
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(channel, "Crash")(b"", timeout=5)
    err = info.value
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in err.details()
    assert "KeyError" not in err.details() and "Traceback" not in err.details()
    assert "request id" in err.details()


async def test_database_outage_is_unavailable_not_internal(probe):
    _, channel = probe
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(channel, "DbDown")(b"", timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "does not answer" in info.value.details() and "10.1.2.3" not in info.value.details()


async def test_domain_error_becomes_precise_status_with_details(probe):
    _, channel = probe
    call = unary(channel, "Invalid")(b"", timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = await rpc_status_aio.from_call(call)
    assert field_violations(status.details) == {"options": "a poll needs at least 2 options"}


async def test_caller_deadline_is_enforced_on_the_server(probe):
    _, channel = probe
    probe_service.cancelled.clear()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await unary(channel, "Slow")(b"30", timeout=0.3)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The handler itself was stopped, not left running after the caller gave up.
    await asyncio.wait_for(probe_service.cancelled.wait(), 5)


async def test_deadline_propagates_to_downstream_calls(probe):
    """A handler's downstream call inherits what is left of its caller's deadline."""
    server, _ = probe
    downstream = grpc.aio.insecure_channel(server.address, interceptors=[DeadlinePropagation()])

    async def relay(request: bytes, context) -> bytes:
        return await downstream.unary_unary(f"/{probe_service.DOMAIN.service}/Budget")(b"")

    relay_server = DomainServer(
        probe_service.spec({"Relay": grpc.unary_unary_rpc_method_handler(relay)}),
        host="127.0.0.1", port=0, grace=1.0,
    )
    await relay_server.start()
    try:
        async with grpc.aio.insecure_channel(relay_server.address) as channel:
            left = float(await unary(channel, "Relay")(b"", timeout=2.0))
        # gRPC rounds a timeout up to three significant figures on the wire (2.0001 s goes out as 2.01 s)
        assert 0 < left <= 2.01
    finally:
        await downstream.close()
        await relay_server.stop()


async def test_reflection_lists_the_service_and_health(probe):
    _, channel = probe
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = set()
    async for response in responses:
        names = {s.name for s in response.list_services_response.service}
        break
    assert {probe_service.DOMAIN.service, "grpc.health.v1.Health"} <= names


def test_sigterm_drains_in_flight_call_and_ends_streams_with_status():
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AGORA_SHUTDOWN_GRACE": "4"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.services.kit.probe_service", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("ready"):
                break
        else:
            pytest.fail(f"probe server exited early with {proc.wait()}")
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        slow = channel.unary_unary(f"/{probe_service.DOMAIN.service}/Slow").future(b"1.5", timeout=10)
        stream = channel.unary_stream(f"/{probe_service.DOMAIN.service}/Ticks")(b"", timeout=10)
        assert next(stream) == b"1"
        time.sleep(0.3)  # both calls are now in flight
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert slow.result() == b"done"  # drained, not cut
        with pytest.raises(grpc.RpcError) as info:
            for _ in stream:
                pass
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in info.value.details()
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - sent < 5, "SIGTERM must end the server within 5 s"
        channel.close()
    finally:
        if proc.poll() is None:
            proc.kill()
