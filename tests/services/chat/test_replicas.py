"""Two chat processes (`python -m services.chat`, real backends) form one chat over RabbitMQ and
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg2
import pytest
from agora.chat.v1 import chat_pb2, chat_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.services.chat.support import WAIT, ChatClient, free_port, unique

ROOT = Path(__file__).resolve().parents[3]
MESSAGE, JOIN = chat_pb2.MESSAGE_KIND_MESSAGE, chat_pb2.MESSAGE_KIND_JOIN


@pytest.fixture
def database(postgres_url):
    """A database of this test's own (the processes use the default `chat` schema in it)."""
    name = unique("agora_chat_replicas")
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    admin.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                           (name,))
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
    admin.close()


async def serving(address: str, process: subprocess.Popen, log: Path) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(300):
            assert process.poll() is None, f"chat process exited early:\n{log.read_text()[-3000:]}"
            try:
                reply = await health.Check(
                    health_pb2.HealthCheckRequest(service="agora.chat.v1.ChatService"), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(
        f"chat process at {address} did not become SERVING within 30 s:\n{log.read_text()[-3000:]}")


async def test_clients_on_different_processes_talk(database, amqp_url, tmp_path):
    processes, addresses = [], []
    try:
        for n in range(2):
            port = free_port()
            log = tmp_path / f"chat{n}.log"
            env = {**os.environ, "AGORA_BACKENDS": "real", "AGORA_GRPC_PORT": str(port),
                   "AGORA_POSTGRES_URL": database, "AGORA_AMQP_URL": amqp_url, "AGORA_LOG_FORMAT": "text",
                   "AGORA_DATA_DIR": str(tmp_path / f"data{n}"), "AGORA_IDENTITY_TARGET": "127.0.0.1:1"}
            processes.append((subprocess.Popen([sys.executable, "-m", "services.chat"], cwd=ROOT, env=env,
                                               stdout=log.open("w"), stderr=subprocess.STDOUT), log))
            addresses.append(f"127.0.0.1:{port}")
        for (process, log), address in zip(processes, addresses, strict=True):
            await serving(address, process, log)
        async with grpc.aio.insecure_channel(addresses[0]) as one, \
                grpc.aio.insecure_channel(addresses[1]) as two:
            stub1, stub2 = chat_pb2_grpc.ChatServiceStub(one), chat_pb2_grpc.ChatServiceStub(two)
            ann = ChatClient(stub1, chat_pb2.ChatRequest(username="ann"))
            bob = ChatClient(stub2, chat_pb2.ChatRequest(username="bob"))
            await ann.next()
            await bob.next()
            [bob_joined] = [m for m in await ann.messages(2, kinds=(JOIN,)) if m.username == "bob"] or [None]
            assert bob_joined is not None, "ann (process 1) never saw bob (process 2) join"
            members = await stub1.GetRoom(chat_pb2.GetRoomRequest(room_id="general"), timeout=WAIT)
            assert {m.username for m in members.members} == {"ann", "bob"}
            for i in range(5):
                ann.send(f"from one {i}")
                bob.send(f"from two {i}")
            await stub1.Send(chat_pb2.SendRequest(username="carol", text="unary on one"), timeout=WAIT)
            seen_ann = [(m.sequence, m.text) for m in await ann.messages(11)]
            seen_bob = [(m.sequence, m.text) for m in await bob.messages(11)]
            assert seen_ann == seen_bob
            assert {t for _, t in seen_ann} == (
                {f"from {w} {i}" for w in ("one", "two") for i in range(5)} | {"unary on one"})
            ann.close()
            bob.close()
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, log in processes:
            try:
                code = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                raise AssertionError(f"chat process ignored SIGTERM:\n{log.read_text()[-3000:]}") from None
            assert code == 0, f"chat process exited {code}:\n{log.read_text()[-3000:]}"
