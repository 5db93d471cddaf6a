"""Start chat servers (and the bridge) on free ports for the chat tests; small stream helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from agora.chat.v1 import chat_pb2, chat_pb2_grpc

from services.chat.service import build
from services.chat.store import ChatStore
from services.kit.auth import Caller
from services.kit.config import Settings
from services.kit.server import DomainServer
from services.mesh.launcher import Runtime

DESCRIPTORS = Path(__file__).resolve().parents[3] / "clients" / "python" / "agora" / "descriptors.binpb"
WAIT = 10.0  # seconds any single expected event may take before a test gives up with a message


class FakeSessions:
    """token -> Caller, standing in for identity's CheckSession."""

    def __init__(self, users: dict[str, Caller] | None = None) -> None:
        self.users = users or {}

    async def resolve(self, token: str) -> Caller | None:
        return self.users.get(token)


@dataclass
class ChatServer:
    address: str
    server: DomainServer
    runtime: Runtime

    def channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.address)


@contextlib.asynccontextmanager
async def chat_server(settings: Settings, *, store: ChatStore | None = None, **options):
    runtime = Runtime(settings)
    options.setdefault("sessions", FakeSessions({"alice-token": Caller("u-alice", "alice")}))
    spec = await build(runtime, store=store, **options)
    server = DomainServer(spec, host="127.0.0.1", port=0, grace=1.0, health_interval=5.0,
                          lifecycle=runtime.lifecycle)
    await server.start()
    try:
        yield ChatServer(server.address, server, runtime)
    finally:
        await server.stop()
        await runtime.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def bridge(chat_address: str):
    """The real bridge (gateway.server) in front of `chat_address`; yields its base URL."""
    from gateway.server import make_gateway_server

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_gateway_server(DESCRIPTORS.read_bytes(), {"agora.chat.v1.ChatService": chat_address},
                                 default_timeout=10.0)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def new_room(stub: chat_pb2_grpc.ChatServiceStub, title: str = "Test room") -> str:
    reply = await stub.CreateRoom(
        chat_pb2.CreateRoomRequest(room_id=unique("r").replace("_", "-"), title=title),
        metadata=[("authorization", "Bearer alice-token")], timeout=WAIT,
    )
    return reply.room.id


class ChatClient:
    """A gRPC Chat stream: frames go in through a queue, replies are read with a bounded wait."""

    def __init__(self, stub: chat_pb2_grpc.ChatServiceStub, first: chat_pb2.ChatRequest, **call) -> None:
        self.frames: asyncio.Queue = asyncio.Queue()
        self.frames.put_nowait(first)

        async def requests():
            while True:
                frame = await self.frames.get()
                if frame is None:
                    return
                yield frame

        self.call = stub.Chat(requests(), **call)

    def send(self, text: str = "", **fields) -> None:
        self.frames.put_nowait(chat_pb2.ChatRequest(text=text, **fields))

    async def next(self) -> chat_pb2.ChatResponse:
        reply = await asyncio.wait_for(self.call.read(), WAIT)
        assert reply is not grpc.aio.EOF, \
            f"stream ended: {await self.call.code()} {await self.call.details()}"
        return reply

    async def messages(self, count: int, kinds=(chat_pb2.MESSAGE_KIND_MESSAGE,)) -> list[chat_pb2.Message]:
        """The next `count` entries of the given kinds (others skipped)."""
        out: list[chat_pb2.Message] = []
        while len(out) < count:
            reply = await self.next()
            if reply.HasField("message") and reply.message.kind in kinds:
                out.append(reply.message)
        return out

    def close(self) -> None:
        self.call.cancel()
