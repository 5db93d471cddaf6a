"""Chat servers for the tests: embedded (SQLite + in-process bus) and real (PostgreSQL + RabbitMQ)."""

from __future__ import annotations

import contextlib

import pytest
from agora.chat.v1 import chat_pb2_grpc

from services.chat.stores.postgres import PostgresChatStore
from services.kit.config import Settings
from tests.services.chat.support import chat_server, unique


@contextlib.asynccontextmanager
async def real_chat_server(postgres_url: str, amqp_url: str, **options):
    """A chat server on PostgreSQL (a schema of its own, dropped after) and RabbitMQ."""
    settings = Settings(backends="real", postgres_url=postgres_url, amqp_url=amqp_url)
    store = PostgresChatStore(postgres_url, schema=unique("chat_test"))
    try:
        async with chat_server(settings, store=store, **options) as server:
            yield server
    finally:
        cleanup = PostgresChatStore(postgres_url, schema=store.schema)
        await cleanup.drop()
        await cleanup.close()


@pytest.fixture(params=["embedded", "real"])
async def server(request, tmp_path):
    """The same end-to-end test over both backends."""
    if request.param == "embedded":
        async with chat_server(Settings(backends="embedded", data_dir=tmp_path)) as embedded:
            yield embedded
    else:
        postgres_url, amqp_url = request.getfixturevalue("postgres_url"), request.getfixturevalue("amqp_url")
        async with real_chat_server(postgres_url, amqp_url) as real:
            yield real


@pytest.fixture
async def stub(server):
    async with server.channel() as channel:
        yield chat_pb2_grpc.ChatServiceStub(channel)
