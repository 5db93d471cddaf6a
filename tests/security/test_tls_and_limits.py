"""TLS on every gRPC port and on the bridge with a self-signed certificate made here; HSTS only then;
per-address rate limits on login and writes (429 + Retry-After), reads never limited."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.limits import ClientLimits, Rate
from gateway.server import serve_gateway
from services.kit.registry import DOMAINS
from tests.security.conftest import sign_up
from tests.security.mesh import Mesh

DESCRIPTORS = Path(__file__).resolve().parents[2] / "clients/python/agora/descriptors.binpb"


def self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_mesh(tmp_path_factory):
    work = tmp_path_factory.mktemp("tlsmesh")
    cert, key = self_signed(work)
    mesh = Mesh(work, AGORA_TLS_CERT=str(cert), AGORA_TLS_KEY=str(key)).start()
    mesh.cert = cert
    try:
        yield mesh
    finally:
        mesh.stop()


async def test_every_grpc_port_serves_tls_only(tls_mesh):
    credentials = grpc.ssl_channel_credentials(tls_mesh.cert.read_bytes())
    for name in DOMAINS:
        async with grpc.aio.secure_channel(tls_mesh.target(name), credentials) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                    timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
        async with grpc.aio.insecure_channel(tls_mesh.target(name)) as plain:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=3)
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED), name


async def test_the_bridge_serves_https_with_hsts_and_calls_upstreams_over_tls(tls_mesh):
    async with httpx.AsyncClient(base_url=tls_mesh.base_url,
                                 verify=ssl.create_default_context(cafile=str(tls_mesh.cert)),
                                 timeout=30) as https:
        r = await https.get("/health")
        assert r.status_code == 200, r.text  # every upstream answered over TLS
        assert r.headers["strict-transport-security"].startswith("max-age="), r.headers
        user = await sign_up(https)  # bridge -> identity, and auctions -> identity sessions, all TLS
        r = await https.post("/v1/rooms", json={"title": "tls room"},
                             headers={"authorization": f"Bearer {user['token']}"})
        assert r.status_code == 200, r.text
    async with httpx.AsyncClient(timeout=5) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"http://127.0.0.1:{tls_mesh.http_port}/health")


async def test_rate_limits_on_login_and_writes(secure_mesh):
    upstreams = {d.service: secure_mesh.target(d.name) for d in DOMAINS.values()}
    limits = ClientLimits(login=Rate(1 / 60, 3), writes=Rate(0.5, 5))
    ready, stop = asyncio.Event(), asyncio.Event()
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    task = asyncio.create_task(serve_gateway(DESCRIPTORS.read_bytes(), upstreams, sock=sock,
                                             ready_event=ready, stop_event=stop, client_limits=limits))
    await asyncio.wait_for(ready.wait(), 30)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            logins = [await http.post("/v1/auth/login", json={"user_name": "nobody", "password": "x" * 12})
                      for _ in range(5)]
            assert ([r.status_code for r in logins[:3]] == [401] * 3
                    or all(r.status_code != 429 for r in logins[:3]))
            limited = logins[3]
            assert limited.status_code == 429, limited.text
            assert int(limited.headers["retry-after"]) >= 1 and "login" in limited.json()["message"]
            writes = [await http.post("/v1/polls", json={"question": "q", "options": ["a", "b"]})
                      for _ in range(7)]
            codes = [r.status_code for r in writes]
            assert codes[:5].count(429) == 0 and codes[5] == 429, codes
            assert writes[5].headers["retry-after"] == "2", writes[5].headers
            reads = [await http.get("/v1/polls") for _ in range(20)]
            assert all(r.status_code == 200 for r in reads), "reads must not be rate limited"
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
