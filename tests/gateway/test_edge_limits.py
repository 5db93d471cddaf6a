"""HTTP limits at the bridge's edge over real sockets: request-head size (431), the time a connection gets
to send its head (408, then closed), open connections per address and in all, X-Forwarded-For believed
only from configured proxies, and oversized Authorization / Grpc-Metadata-* refused before forwarding."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import httpx
import pytest

from gateway import errors
from gateway.edge import EdgeLimits, TrustedProxies
from gateway.limits import ClientLimits, Rate
from gateway.server import make_gateway_server
from tests.gateway.mirror_server import SERVICE

WAIT = 15.0  # a generous bound on any single wait below; no test asserts how fast something happens


@contextlib.asynccontextmanager
async def bridge(mesh, **options):
    """A bridge of its own in front of the session's Mirror server; yields its base URL's port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_gateway_server(mesh.descriptor_set, {SERVICE: mesh.grpc_target}, default_timeout=10.0,
                                 static_dir=None, **options)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def raw(port: int, data: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if data:
        writer.write(data)
        await writer.drain()
    return reader, writer


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the bridge closes the connection (a reset counts as closed)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(reader.read(65536), WAIT):
            chunks.append(chunk)
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def test_a_request_head_over_the_limit_is_answered_431_and_closed(mesh):
    async with bridge(mesh, edge_limits=EdgeLimits(max_header_bytes=16 * 1024)) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            ok = await http.get("/v1/headers", headers={"x-padding": "a" * 12_000})
            assert ok.status_code == 200, ok.text
            big = await http.get("/v1/headers", headers={"x-padding": "a" * 20_000})
            assert big.status_code == 431, big.text
            assert big.json()["code"] == 8 and "16384" in big.json()["message"]
        # 4 MiB of one header line that never ends: refused once the limit is passed, never buffered.
        reader, writer = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\nx-big: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"b" * 65536)
                await writer.drain()
        response = await read_all(reader)
        assert status_of(response) == 431 and b"connection: close" in response
        writer.close()


async def test_a_partial_request_head_is_closed_after_the_header_timeout(mesh):
    async with bridge(mesh, edge_limits=EdgeLimits(header_timeout=0.5)) as port:
        half, w1 = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\nx-slow: ")
        silent, w2 = await raw(port)
        assert status_of(await read_all(half)) == 408  # then closed: read_all returned
        assert await read_all(silent) == b""  # nothing asked: closed without an answer
        # A keep-alive connection's next request gets the same deadline from its first byte.
        reader, w3 = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert status_of(first) == 200
        w3.write(b"GET /v1/headers HTTP/1.1\r\nho")
        rest = await read_all(reader)
        assert b"408 Request Timeout" in rest
        for w in (w1, w2, w3):
            w.close()


async def test_a_response_that_streams_longer_than_the_header_timeout_stays_open(mesh):
    """The head timer is for a request's head: a stream it answers (SSE here) outlives it."""
    async with bridge(mesh, edge_limits=EdgeLimits(header_timeout=0.3), heartbeat_interval=0.1) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            async with http.stream("GET", "/v1/topics/edge-long:watch",
                                   headers={"accept": "text/event-stream"}) as stream:
                assert stream.status_code == 200
                lines = stream.aiter_lines()
                await asyncio.sleep(1.5)  # five header timeouts
                reply = await http.post("/v1/topics/edge-long:publish", json={"text": "still here"})
                assert reply.status_code == 200, reply.text
                async for line in lines:
                    if line.startswith("data: "):
                        assert "still here" in line
                        break


async def test_idle_keep_alive_connections_are_closed(mesh):
    async with bridge(mesh, idle_timeout=0.5) as port:
        reader, writer = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\n\r\n")
        response = await read_all(reader)  # returns only once the bridge closes the idle connection
        assert status_of(response) == 200
        writer.close()


async def test_open_connections_per_address_are_capped(mesh):
    async with bridge(mesh, edge_limits=EdgeLimits(max_connections_per_client=3)) as port:
        held = [await raw(port) for _ in range(3)]
        reader, writer = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\n\r\n")
        refused = await read_all(reader)
        assert status_of(refused) == 429 and b"retry-after: 1" in refused, refused
        writer.close()
        held.pop()[1].close()  # one leaves: there is room again
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            for _ in range(100):
                r = await http.get("/v1/headers")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 200, r.text
        for _, w in held:
            w.close()


async def test_open_connections_in_all_are_capped(mesh):
    async with bridge(mesh, edge_limits=EdgeLimits(max_connections=2)) as port:
        held = [await raw(port) for _ in range(2)]
        reader, writer = await raw(port, b"GET /v1/headers HTTP/1.1\r\nhost: x\r\n\r\n")
        refused = await read_all(reader)
        assert status_of(refused) == 503 and b"retry-after: 1" in refused, refused
        for _, w in [*held, (reader, writer)]:
            w.close()


async def test_websocket_connections_count_until_they_close(mesh):
    import websockets

    async with bridge(mesh, edge_limits=EdgeLimits(max_connections_per_client=1)) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/tail/t") as ws:
            await asyncio.wait_for(ws.recv(), WAIT)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
                assert (await http.get("/v1/headers")).status_code == 429
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            for _ in range(100):
                r = await http.get("/v1/headers")
                if r.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 200, r.text


async def _post(http: httpx.AsyncClient, forwarded_for: str) -> int:
    http.cookies.clear()  # the Mirror sets a session cookie; a cookie session would need CSRF proof
    return (await http.post("/v1/headers", json={}, headers={"x-forwarded-for": forwarded_for})).status_code


async def _forwarded_for(port: int, claimed: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
        r = await http.get("/v1/headers", headers={"x-forwarded-for": claimed})
        assert r.status_code == 200, r.text
        return r.json()["metadata"]["x-forwarded-for"]


async def test_x_forwarded_for_is_ignored_from_an_untrusted_peer(mesh):
    limits = ClientLimits(writes=Rate(0.001, 3))
    async with bridge(mesh, client_limits=limits) as port:  # AGORA_TRUSTED_PROXIES empty: the default
        assert await _forwarded_for(port, "203.0.113.7") == "127.0.0.1"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            codes = [await _post(http, f"198.51.100.{i}") for i in range(5)]
        assert codes == [200, 200, 200, 429, 429], codes  # varying the header does not reset the budget


async def test_x_forwarded_for_is_honoured_from_a_configured_proxy(mesh):
    limits = ClientLimits(writes=Rate(0.001, 3))
    async with bridge(mesh, client_limits=limits, trusted_proxies="10.0.0.0/8, 127.0.0.1") as port:
        assert await _forwarded_for(port, "203.0.113.7") == "203.0.113.7"
        # the right-most address the proxy did not vouch for is the client
        assert await _forwarded_for(port, "192.0.2.1, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            codes = [await _post(http, "198.51.100.1") for _ in range(4)]
            assert codes == [200, 200, 200, 429], codes  # one client behind the proxy, one budget
            assert await _post(http, "198.51.100.2") == 200


async def test_oversized_authorization_and_grpc_metadata_are_refused_431_at_the_bridge(mesh):
    async with bridge(mesh, max_metadata_bytes=2048) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            assert (await http.get("/v1/headers",
                                   headers={"authorization": "Bearer " + "t" * 1000})).status_code == 200
            for header in ("authorization", "grpc-metadata-x-note"):
                r = await http.get("/v1/headers", headers={header: "Bearer " + "t" * 4000})
                assert r.status_code == 431, (header, r.text)
                assert r.json()["code"] == 8 and "2048" in r.json()["message"]
                assert "retry-after" not in r.headers


async def test_the_upstreams_metadata_refusal_maps_to_431_not_429(mesh):
    # The bridge's own check off: the Mirror server's gRPC limit (8 KiB) refuses instead.
    async with bridge(mesh, max_metadata_bytes=0) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as http:
            r = await http.get("/v1/headers", headers={"grpc-metadata-x-note": "n" * 20_000})
    assert r.status_code == 431, r.text
    assert r.json()["code"] == 8 and "metadata" in r.json()["message"].lower()


def test_metadata_refusals_are_recognised():
    assert errors.is_metadata_too_large("received metadata size exceeds hard limit (16413 vs. 16384)")
    assert errors.is_metadata_too_large("Received metadata size exceeds soft limit")
    assert not errors.is_metadata_too_large("too many writes from this address; retry in 2 s")


def test_trusted_proxies_parse():
    proxies = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1,,::1")
    assert "10.2.3.4" in proxies and "127.0.0.1" in proxies and "::1" in proxies
    assert "192.168.1.1" not in proxies and "not-an-ip" not in proxies
    assert not TrustedProxies.parse("") and "127.0.0.1" not in TrustedProxies.parse("")
    assert "8.8.8.8" in TrustedProxies.parse("*")
    with pytest.raises(ValueError):
        TrustedProxies.parse("10.0.0.0/33")
