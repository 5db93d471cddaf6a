"""The polls test mesh: the polls server (embedded or real backends) and the bridge, on real ports."""

from __future__ import annotations

import asyncio
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from agora.polls.v1 import polls_pb2_grpc

from gateway.server import make_gateway_server
from services.kit.auth import Caller
from services.kit.config import Settings
from services.kit.server import DomainServer
from services.mesh.launcher import Runtime
from services.polls.service import build

DESCRIPTORS = Path(__file__).resolve().parents[3] / "clients" / "python" / "agora" / "descriptors.binpb"


class TokenSessions:
    """Stands in for identity (outside this domain): token `user-<id>` is user <id>."""

    async def resolve(self, token: str) -> Caller | None:
        if token.startswith("user-"):
            return Caller(token[5:], token[5:])
        return None


def bearer(user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer user-{user}"),)


def unique(stem: str) -> str:
    return f"t{uuid.uuid4().hex[:10]}_{stem}"


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@dataclass
class PollsMesh:
    backend: str
    grpc_target: str
    base_url: str
    ws_url: str
    stub: polls_pb2_grpc.PollServiceStub
    spec: object
    settings: Settings
    schema: str
    mongo_db: str


async def start_mesh(backend: str, tmp: Path, *, run_tally: bool = True, gateway: bool = True,
                     settings: Settings | None = None, schema: str | None = None, mongo_db: str | None = None,
                     group: str | None = None):
    settings = settings or Settings.from_env(backends=backend, data_dir=tmp, health_interval=0.5)
    schema = schema or unique("polls")
    mongo_db = mongo_db or unique("polls")
    group = group or unique("tally").replace("_", "-")
    runtime = Runtime(settings)
    spec = await build(runtime, sessions=TokenSessions(), run_tally=run_tally, schema=schema,
                       mongo_db=mongo_db, sqlite_path=str(tmp / f"{schema}.sqlite3"), tally_group=group)
    server = DomainServer(spec, host="127.0.0.1", port=0, grace=1.0)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    bridge = task = None
    base_url = ws_url = ""
    if gateway:
        sock = free_socket()
        port = sock.getsockname()[1]
        bridge = make_gateway_server(DESCRIPTORS.read_bytes(), {"agora.polls.v1.PollService": server.address},
                                     heartbeat_interval=0.5)
        task = asyncio.ensure_future(bridge.serve(sockets=[sock]))
        while not bridge.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        base_url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    mesh = PollsMesh(backend, server.address, base_url, ws_url, polls_pb2_grpc.PollServiceStub(channel), spec,
                     settings, schema, mongo_db)

    async def stop() -> None:
        if bridge is not None:
            bridge.should_exit = True
            await task
        await channel.close()
        await server.stop()
        bus = await runtime.bus()
        if backend == "real":
            await bus.delete_group(group)
        await runtime.close()
        if backend == "real":
            from services.polls.stores.mongo import MongoTallyStore
            from services.polls.stores.postgres import PostgresPollStore

            pg = PostgresPollStore(settings.postgres_url, schema=schema)
            await pg.drop()
            await pg.close()
            mongo = MongoTallyStore(settings.mongo_url, mongo_db)
            await mongo.drop()
            await mongo.close()

    return mesh, stop


@pytest.fixture(scope="module", params=["embedded", "real"])
async def mesh(request, tmp_path_factory):
    if request.param == "real":
        for fixture in ("postgres_url", "mongo_url", "amqp_url"):
            request.getfixturevalue(fixture)
    mesh, stop = await start_mesh(request.param, tmp_path_factory.mktemp("polls"))
    yield mesh
    await stop()
