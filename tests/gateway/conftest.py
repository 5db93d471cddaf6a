"""Session fixtures: compile the test proto, start the Mirror gRPC server and the bridge on real ports."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

import httpx
import pytest

from gateway.server import make_gateway_server
from tests.gateway.mirror_server import SERVICE, Messages, MirrorService, compile_descriptor_set, start_server


@dataclass
class Mesh:
    base_url: str
    ws_url: str
    grpc_target: str
    descriptor_set: bytes
    messages: Messages
    service: MirrorService


CSRF_KEY = b"the test bridge's CSRF cookie key"


@pytest.fixture(scope="session")
def descriptor_set(tmp_path_factory) -> bytes:
    return compile_descriptor_set(tmp_path_factory.mktemp("protos"))


@pytest.fixture(scope="session")
async def mesh(descriptor_set):
    messages = Messages(descriptor_set)
    service = MirrorService(messages)
    grpc_server, grpc_port = await start_server(service)
    target = f"127.0.0.1:{grpc_port}"
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without
    # it every response pays ~40 ms of Nagle + delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    try:
        server = make_gateway_server(
            descriptor_set,
            {SERVICE: target},
            default_timeout=10.0,
            max_body_bytes=64 * 1024,
            cors_origins=["http://allowed.example"],
            heartbeat_interval=0.2,
            csrf_key=CSRF_KEY,
        )
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield Mesh(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", target, descriptor_set, messages,
                   service)
        server.should_exit = True
        await task
    finally:
        await grpc_server.stop(0)


@pytest.fixture(scope="session")
async def client(mesh):
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as c:
        yield c
