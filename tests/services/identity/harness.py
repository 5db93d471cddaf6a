"""Start identity + auctions + the bridge on real ports, embedded (SQLite, in-process bus) or real
(PostgreSQL in throw-away schemas, RabbitMQ); used by the identity and auctions tests and the bench."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.resources
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
from agora.auctions.v1 import auctions_pb2 as apb
from agora.auctions.v1 import auctions_pb2_grpc
from agora.identity.v1 import identity_pb2 as ipb
from agora.identity.v1 import identity_pb2_grpc

from gateway.server import make_gateway_server
from services.auctions import service as auctions_service
from services.auctions.domain import AuctionRules
from services.auctions.store import open_store as open_auction_store
from services.identity import service as identity_service
from services.identity.domain import IdentityRules
from services.identity.store import open_store as open_identity_store
from services.kit.config import Settings
from services.kit.registry import DOMAINS
from services.kit.server import DomainServer
from services.mesh.launcher import Runtime

TEST_IDENTITY_RULES = IdentityRules(address_attempts=10_000, user_failures=50, signups_per_address=10_000)
TEST_AUCTION_RULES = AuctionRules(min_duration=timedelta(milliseconds=500))


@dataclass
class Mesh:
    backend: str
    runtime: Runtime
    identity: DomainServer
    auctions: DomainServer
    identity_store: Any
    auction_store: Any
    http_url: str = ""
    ws_url: str = ""
    _gateway: Any = None
    _gateway_task: asyncio.Task | None = None

    def identity_stub(self, channel: grpc.aio.Channel) -> identity_pb2_grpc.IdentityServiceStub:
        return identity_pb2_grpc.IdentityServiceStub(channel)

    def channel(self, which: str = "auctions") -> grpc.aio.Channel:
        server = self.auctions if which == "auctions" else self.identity
        return grpc.aio.insecure_channel(server.address)


def unique(stem: str) -> str:
    return f"t{uuid.uuid4().hex[:10]}_{stem}"


async def start_mesh(backend: str, data_dir: Path, *, postgres_url: str = "", amqp_url: str = "",
                     gateway: bool = True, identity_rules: IdentityRules = TEST_IDENTITY_RULES,
                     auction_rules: AuctionRules = TEST_AUCTION_RULES, closer_poll: float = 0.2) -> Mesh:
    overrides: dict[str, Any] = {"backends": backend, "data_dir": data_dir}
    if backend == "real":
        overrides.update(postgres_url=postgres_url, amqp_url=amqp_url)
    settings = Settings.from_env(**overrides)
    runtime = Runtime(settings)
    run = uuid.uuid4().hex[:10]
    identity_store = open_identity_store(settings, schema=f"t{run}_identity")
    auction_store = open_auction_store(settings, schema=f"t{run}_auctions")
    spec = await identity_service.build(runtime, store=identity_store, rules=identity_rules)
    identity = DomainServer(spec, host="127.0.0.1", port=0, grace=1.0, lifecycle=runtime.lifecycle)
    await identity.start()
    runtime.settings = dataclasses.replace(runtime.settings, targets={"identity": identity.address})
    spec = await auctions_service.build(runtime, store=auction_store, rules=auction_rules,
                                        closer_poll=closer_poll)
    auctions = DomainServer(spec, host="127.0.0.1", port=0, grace=1.0, lifecycle=runtime.lifecycle)
    await auctions.start()
    mesh = Mesh(backend, runtime, identity, auctions, identity_store, auction_store)
    if gateway:
        descriptors = importlib.resources.files("agora").joinpath("descriptors.binpb").read_bytes()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = make_gateway_server(
            descriptors,
            {DOMAINS["identity"].service: identity.address, DOMAINS["auctions"].service: auctions.address},
            default_timeout=10.0, heartbeat_interval=1.0,
        )
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        mesh.http_url, mesh.ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
        mesh._gateway, mesh._gateway_task = server, task
    return mesh




async def stop_mesh(mesh: Mesh) -> None:
    if mesh._gateway is not None:
        mesh._gateway.should_exit = True
        await mesh._gateway_task
    await mesh.auctions.stop()
    await mesh.identity.stop()
    await mesh.runtime.close()
    if mesh.backend == "real":
        for store in (mesh.auction_store, mesh.identity_store):
            fresh = type(store)(store.url, schema=store.schema)
            await fresh.drop()
            await fresh.close()


# -- small clients


async def sign_up_and_login(channel: grpc.aio.Channel, name: str | None = None,
                            password: str = "correct horse battery") -> tuple[str, str, str]:
    """(user_id, user_name, session token) of a fresh account."""
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    name = name or f"u{uuid.uuid4().hex[:12]}"
    reply = await stub.SignUp(ipb.SignUpRequest(user_name=name, email=f"{name}@example.test",
                                                password=password))
    login = await stub.Login(ipb.LoginRequest(user_name=name, password=password))
    return reply.user_id, name, login.session_token


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def usd(minor: int) -> dict:
    return {"currencyCode": "USD", "amountMinor": str(minor)}


async def create_auction(channel: grpc.aio.Channel, token: str, *, seconds: float = 30.0, start: int = 100,
                         increment: int = 10, window: float = 0.0, extension: float = 0.0) -> apb.Auction:
    from datetime import datetime, timezone

    from agora.common.v1.money_pb2 import Money
    from google.protobuf.duration_pb2 import Duration
    from google.protobuf.timestamp_pb2 import Timestamp

    end = Timestamp()
    end.FromDatetime(datetime.now(timezone.utc) + timedelta(seconds=seconds))
    stub = auctions_pb2_grpc.AuctionServiceStub(channel)
    reply = await stub.CreateAuction(apb.CreateAuctionRequest(
        product_name="lamp", description="a lamp",
        starting_price=Money(currency_code="USD", amount_minor=start),
        min_increment=Money(currency_code="USD", amount_minor=increment), auction_end=end,
        anti_sniping_window=Duration(seconds=int(window), nanos=int((window % 1) * 1e9)),
        anti_sniping_extension=Duration(seconds=int(extension), nanos=int((extension % 1) * 1e9)),
    ), metadata=bearer(token))
    return reply.auction


async def http_login(client: httpx.AsyncClient, name: str,
                     password: str = "correct horse battery") -> httpx.Response:
    """Cookie login through the bridge, as a page does: the client's jar keeps agora_session and the
    bridge's signed agora_csrf cookie; the token for writes is on `client.headers`."""
    token = (await client.get("/v1/auth/csrftoken")).json()["csrfToken"]
    client.headers["x-csrf-token"] = token
    reply = await client.post("/v1/auth/login", json={"user_name": name, "password": password})
    reply.raise_for_status()
    return reply
