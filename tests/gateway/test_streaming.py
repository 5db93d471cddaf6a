"""Server streams as SSE, NDJSON and WebSocket; bidi over WebSocket; resume, errors, disconnects."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse


async def _sse_events(client, url, headers=None, limit=None):
    events = []
    async with aconnect_sse(client, "GET", url, headers=headers or {}) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            events.append(event)
            if limit is not None and len(events) >= limit:
                break
    return events


async def test_sse_with_ids(client):
    events = await _sse_events(client, "/v1/count?count=5")
    assert [e.id for e in events] == ["1", "2", "3", "4", "5"]
    assert [json.loads(e.data)["sequence"] for e in events] == ["1", "2", "3", "4", "5"]


async def test_sse_resume_loses_nothing(client):
    first = await _sse_events(client, "/v1/count?count=10", limit=4)
    last_id = first[-1].id
    rest = await _sse_events(client, "/v1/count?count=10", headers={"Last-Event-ID": last_id})
    seen = [int(e.id) for e in first] + [int(e.id) for e in rest]
    assert seen == list(range(1, 11))


async def test_ndjson_default(client):
    r = await client.get("/v1/count", params={"count": 3})
    assert r.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [line["result"]["sequence"] for line in lines] == ["1", "2", "3"]


async def test_stream_that_fails_at_once_gets_http_status(client):
    # Tail on an empty topic is fine; Count with a bad resume cursor is a 400 before any message.
    r = await client.get("/v1/count", headers={"Accept": "text/event-stream",
                                               "Last-Event-ID": "not-a-number"})
    assert r.status_code == 400 and r.json()["code"] == 3


async def test_sse_heartbeat_and_disconnect_cancels_upstream(mesh, client):
    topic = "quiet-hb"  # ticks every 0.5 s; the bridge in these tests beats every 0.2 s
    async with client.stream("GET", f"/v1/tail/{topic}", headers={"Accept": "text/event-stream"}) as r:
        got = b""
        async for chunk in r.aiter_bytes():
            got += chunk
            if got.count(b"data: ") >= 2:
                break
    assert got.startswith(b": stream open\n\n"), got
    # Between the first tick and the second the stream is quiet, and the bridge fills it with keepalives.
    between = got.split(b"data: ")[1]
    assert b": keepalive\n\n" in between, got
    await asyncio.wait_for(mesh.service.tail_cancelled[topic].wait(), 5)


async def test_ndjson_disconnect_cancels_upstream(mesh, client):
    topic = "nd"
    async with client.stream("GET", f"/v1/tail/{topic}") as r:
        async for line in r.aiter_lines():
            assert json.loads(line)["result"]["text"] == topic
            break
    await asyncio.wait_for(mesh.service.tail_cancelled[topic].wait(), 5)


async def test_websocket_server_stream(mesh):
    async with websockets.connect(f"{mesh.ws_url}/v1/count?count=3") as ws:
        frames = [json.loads(await ws.recv()) for _ in range(3)]
        with pytest.raises(websockets.ConnectionClosedOK):
            await ws.recv()
    assert [f["sequence"] for f in frames] == ["1", "2", "3"]


async def test_websocket_disconnect_cancels_upstream(mesh):
    topic = "ws"
    async with websockets.connect(f"{mesh.ws_url}/v1/tail/{topic}") as ws:
        assert json.loads(await ws.recv())["text"] == topic
    await asyncio.wait_for(mesh.service.tail_cancelled[topic].wait(), 5)


async def test_websocket_bidi(mesh):
    async with websockets.connect(f"{mesh.ws_url}/v1/rooms/lobby/chat?user=ann") as ws:
        # The URL's fields arrive upstream as the first frame, before the client says anything.
        assert json.loads(await ws.recv()) == {"room": "lobby", "user": "ann", "text": ""}
        await ws.send(json.dumps({"text": "hello"}))
        assert json.loads(await ws.recv()) == {"room": "lobby", "user": "ann", "text": "HELLO"}
        await ws.send(json.dumps({"text": "again", "user": "bob", "room": "other"}))
        assert json.loads(await ws.recv()) == {"room": "other", "user": "bob", "text": "AGAIN"}
        await ws.send(json.dumps({"bogus": 1}))
        with pytest.raises(websockets.ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.rcvd.code == 4003 and "bogus" in caught.value.rcvd.reason


async def test_websocket_error_close_code(mesh):
    async with websockets.connect(f"{mesh.ws_url}/v1/count?count=x") as ws:
        with pytest.raises(websockets.ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.rcvd.code == 4003


async def test_bidi_over_plain_http_asks_for_upgrade(client):
    r = await client.get("/v1/rooms/lobby/chat")
    assert r.status_code == 426


async def test_cross_origin_cookie_websocket_refused(mesh):
    headers = {"Cookie": "agora_session=s", "Origin": "http://evil.example"}
    async with websockets.connect(f"{mesh.ws_url}/v1/count?count=1", additional_headers=headers) as ws:
        with pytest.raises(websockets.ConnectionClosedError) as caught:
            await ws.recv()
    assert caught.value.rcvd.code == 4007


async def test_many_concurrent_streams(client):
    async def one(i):
        r = await client.get("/v1/count", params={"count": 20})
        return len(r.text.splitlines())

    assert await asyncio.gather(*(one(i) for i in range(20))) == [20] * 20


async def test_stream_error_mid_stream_in_band(mesh, descriptor_set):
    """An upstream that fails after the first message: the error arrives in-band, in every framing."""
    import grpc

    from gateway.app import create_app

    async def failing(request, context):
        yield mesh.messages.Tick(sequence=1)
        await asyncio.sleep(0.4)  # past the first-message window: the 200 is already out
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too slow")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "agora.testing.v1.Mirror",
        {"Count": grpc.unary_stream_rpc_method_handler(
            failing, request_deserializer=mesh.messages.CountRequest.FromString,
            response_serializer=mesh.messages.Tick.SerializeToString)},
    ),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    app = create_app(descriptor_set, {"*": f"127.0.0.1:{port}"})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/v1/count", headers={"Accept": "text/event-stream"})
            assert r.status_code == 200
            assert "event: error" in r.text and '"code":8' in r.text and "too slow" in r.text
            r = await c.get("/v1/count")
            last = json.loads(r.text.splitlines()[-1])
            assert last == {"error": {"code": 8, "message": "too slow", "details": []}}
    finally:
        await app.state.bridge.upstreams.close()
        await server.stop(0)
