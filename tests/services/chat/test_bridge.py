"""Chat through the bridge: the seed's WebSocket and history routes, /v1 routes, errors as HTTP."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
import websockets
from agora.chat.v1 import chat_pb2, chat_pb2_grpc

from services.kit.config import Settings
from tests.services.chat.support import WAIT, ChatClient, bridge, chat_server


@pytest.fixture
async def mesh(tmp_path):
    async with chat_server(Settings(data_dir=tmp_path)) as server, bridge(server.address) as address:
        yield server, address


class WsClient:
    """A seed-style WebSocket client: JSON frames both ways."""

    def __init__(self, ws) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str) -> WsClient:
        ws = await websockets.connect(url)
        await ws.send("{}")  # the first frame joins (the bridge opens the gRPC stream with it)
        return cls(ws)

    async def next(self) -> dict:
        return json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))

    async def entries(self, count: int, kinds=("MESSAGE_KIND_MESSAGE",)) -> list[dict]:
        out = []
        while len(out) < count:
            frame = await self.next()
            if "message" in frame and frame["message"]["kind"] in kinds:
                out.append(frame["message"])
        return out

    async def say(self, text: str) -> None:
        await self.ws.send(json.dumps({"text": text}))


async def test_two_websockets_and_a_grpc_client_see_the_same_messages_in_order(mesh):
    server, address = mesh
    ann = await WsClient.open(f"ws://{address}/v1/rooms/general/chat?username=ann")
    bob = await WsClient.open(f"ws://{address}/v1/rooms/general/chat?username=bob")
    async with server.channel() as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        carol = ChatClient(stub, chat_pb2.ChatRequest(username="carol"))
        hello = await ann.next()
        assert hello["joined"]["room"]["id"] == "general" and hello["joined"]["you"]["username"] == "ann"
        assert "joined" in await bob.next()
        await carol.next()
        for i in range(3):
            await ann.say(f"ann {i}")
            await bob.say(f"bob {i}")
            carol.send(f"carol {i}")
        seen_ann = [(m["sequence"], m["text"]) for m in await ann.entries(9)]
        seen_bob = [(m["sequence"], m["text"]) for m in await bob.entries(9)]
        seen_carol = [(str(m.sequence), m.text) for m in await carol.messages(9)]
        assert seen_ann == seen_bob == seen_carol
        assert sorted(t for _, t in seen_ann) == sorted(f"{who} {i}" for who in ("ann", "bob", "carol")
                                                        for i in range(3))
        carol.close()
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=WAIT) as http:
        history = (await http.get("/v1/rooms/general/messages", params={"limit": 50})).json()
        said = [(m["sequence"], m["text"]) for m in history["messages"]
                if m["kind"] == "MESSAGE_KIND_MESSAGE"]
        assert said[::-1] == seen_ann
        two = (await http.get("/v1/rooms/general/messages", params={"limit": 2})).json()
        assert len(two["messages"]) == 2
        room = (await http.get("/v1/rooms/general")).json()
        assert {m["username"] for m in room["members"]} == {"ann", "bob"}
    await ann.ws.close()
    await bob.ws.close()


async def test_join_leave_and_resume_over_websocket(mesh):
    _, address = mesh
    watcher = await WsClient.open(f"ws://{address}/v1/rooms/general/chat?username=watcher")
    await watcher.entries(1, kinds=("MESSAGE_KIND_JOIN",))
    dan = await WsClient.open(f"ws://{address}/v1/rooms/general/chat?username=dan")
    [joined] = await watcher.entries(1, kinds=("MESSAGE_KIND_JOIN", "MESSAGE_KIND_LEAVE"))
    assert joined["kind"] == "MESSAGE_KIND_JOIN" and joined["username"] == "dan"
    await dan.ws.close()
    [left] = await watcher.entries(1, kinds=("MESSAGE_KIND_JOIN", "MESSAGE_KIND_LEAVE"))
    assert left["kind"] == "MESSAGE_KIND_LEAVE" and left["username"] == "dan"
    last = int(left["sequence"])
    await watcher.ws.close()
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=WAIT) as http:
        for i in range(4):
            reply = await http.post("/v1/rooms/general/messages",
                                    json={"username": "bob", "text": f"while away {i}"})
            assert reply.status_code == 200, reply.text
    back = await WsClient.open(f"ws://{address}/v1/rooms/general/chat?username=watcher&resume_from={last}")
    assert int((await back.next())["sequence"]) == last
    missed = await back.entries(4)
    assert [m["text"] for m in missed] == [f"while away {i}" for i in range(4)]
    await back.ws.close()


async def test_bad_input_maps_to_http_statuses(mesh):
    _, address = mesh
    async with httpx.AsyncClient(base_url=f"http://{address}", timeout=WAIT) as http:
        post = lambda path, body: http.post(path, json=body)  # noqa: E731
        empty = await post("/v1/rooms/general/messages", {"username": "bob", "text": ""})
        assert empty.status_code == 400 and "text" in empty.json()["message"]
        big = await post("/v1/rooms/general/messages", {"username": "bob", "text": "x" * 5000})
        assert big.status_code == 400 and "4096" in big.json()["message"]
        missing = await post("/v1/rooms/nowhere/messages", {"username": "bob", "text": "hi"})
        assert missing.status_code == 404
        exe = {"filename": "run.exe", "contentType": "application/x-msdownload",
               "data": base64.b64encode(b"MZ").decode()}
        forbidden = await post("/v1/rooms/general/messages", {"username": "bob", "attachment": exe})
        assert forbidden.status_code == 400 and "content_type" in forbidden.json()["message"]
        png = {"filename": "dot.png", "contentType": "image/png",
               "data": base64.b64encode(b"\x89PNG").decode()}
        ok = await post("/v1/rooms/general/messages", {"username": "bob", "attachment": png})
        assert ok.status_code == 200
        attachment = ok.json()["message"]["attachment"]
        got = await http.get(f"/v1/rooms/general/attachments/{attachment['id']}")
        assert base64.b64decode(got.json()["attachment"]["data"]) == b"\x89PNG"
        assert (await http.get("/v1/rooms/nowhere")).status_code == 404
        assert (await http.get("/v1/rooms/general/messages", params={"limit": -1})).status_code == 400
        assert (await http.post("/v1/rooms", json={"title": "x"})).status_code == 401
    async with websockets.connect(f"ws://{address}/v1/rooms/nowhere/chat?username=bob") as ws:
        await ws.send("{}")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd.code == 4000 + 5  # NOT_FOUND
