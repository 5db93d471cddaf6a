"""Health follows the dependencies: NOT_SERVING while a store is unreachable, SERVING when it is back."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse, urlunparse

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.server import DomainServer
from services.kit.stores.postgres import PostgresDatabase
from services.kit.stores.sqlite import SqliteDatabase
from tests.services.kit import probe_service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class TcpProxy:
    """A loopback TCP relay to a real server that the test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


async def wait_for_status(stub, want: int, service: str = "") -> None:
    for _ in range(100):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        if reply.status == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"health never became {health_pb2.HealthCheckResponse.ServingStatus.Name(want)}")


async def test_health_flips_with_an_unreachable_store_and_back(postgres_url):
    u = urlparse(postgres_url)
    proxy = TcpProxy(u.hostname or "127.0.0.1", u.port or 5432)
    await proxy.start()
    netloc = f"{u.username or 'postgres'}{':' + u.password if u.password else ''}@127.0.0.1:{proxy.port}"
    db = PostgresDatabase(urlunparse(u._replace(netloc=netloc)), connect_timeout=1)
    spec = probe_service.spec()
    spec.probes = {"postgres": db.ping}
    server = DomainServer(spec, host="127.0.0.1", port=0, grace=0.5, health_interval=0.2)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await wait_for_status(stub, SERVING)
            await wait_for_status(stub, SERVING, probe_service.DOMAIN.service)
            await proxy.cut()
            await wait_for_status(stub, NOT_SERVING)
            await wait_for_status(stub, NOT_SERVING, probe_service.DOMAIN.service)
            await proxy.start()  # same port: the store's URL is unchanged
            await wait_for_status(stub, SERVING)
    finally:
        await server.stop()
        await db.close()
        if proxy.server and proxy.server.is_serving():
            await proxy.cut()


async def test_sqlite_store_probe_and_transactions(tmp_path):
    db = SqliteDatabase(tmp_path / "x.db")
    try:
        assert await db.ping()
        await db.run(lambda c: c.execute("CREATE TABLE t (v INTEGER)"))

        def failing(conn):
            conn.execute("INSERT INTO t VALUES (1)")
            raise RuntimeError("roll me back")

        with pytest.raises(RuntimeError, match="roll me back"):  # the caller sees its own error
            await db.transaction(failing)
        await db.transaction(lambda c: c.execute("INSERT INTO t VALUES (2)"))
        rows = await db.run(lambda c: [r[0] for r in c.execute("SELECT v FROM t")])
        assert rows == [2]
    finally:
        await db.close()


async def test_shutdown_stops_advertising_before_draining():
    server = DomainServer(probe_service.spec(), host="127.0.0.1", port=0, grace=0.5)
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        await wait_for_status(stub, SERVING)
        await server.health.shutting_down()
        await wait_for_status(stub, NOT_SERVING)
    await server.stop()
