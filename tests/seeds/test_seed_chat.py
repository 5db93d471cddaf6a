"""Seed 003 (lucaspanzera1/chat at the commit its README describes): a client of the chat.

`/ws?username=NAME` (no name: "Anonymous"); the client sends {"content"}; every member receives
models.Message frames {"id", "username", "content", "timestamp", "type", "onlineCount"}; joins and
leaves are messages from "Sistema", each followed by {"type": "count", "onlineCount"};
`GET /api/messages?limit=50` is a bare array, oldest first.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import httpx
import pytest
import websockets

MESSAGE_KEYS = {"id", "username", "content", "timestamp", "type", "onlineCount"}
HISTORY_KEYS = MESSAGE_KEYS - {"onlineCount"}


def name() -> str:
    return f"n{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def http(mesh):
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as client:
        yield client


def join(mesh, username: str | None):
    query = f"?username={username}" if username is not None else ""
    return websockets.connect(f"{mesh.ws_url}/ws{query}", open_timeout=10)


async def next_frame(ws, want=lambda f: True, timeout: float = 10.0) -> dict:
    """The next frame `want` accepts (frames of other tests' members are skipped: the room is shared)."""
    async def read() -> dict:
        while True:
            frame = json.loads(await ws.recv())
            if want(frame):
                return frame
    return await asyncio.wait_for(read(), timeout)


def about(who: str):
    return lambda f: who in f.get("content", "") or f.get("username") == who


def assert_message(frame: dict, keys=MESSAGE_KEYS) -> None:
    assert set(frame) == keys, frame
    assert isinstance(frame["onlineCount"], int) if "onlineCount" in keys else True
    datetime.fromisoformat(frame["timestamp"].replace("Z", "+00:00"))  # RFC 3339


async def test_join_talk_and_leave_in_the_seeds_frames(mesh):
    ana, bob = name(), name()
    async with join(mesh, ana) as a:
        joined = await next_frame(a, about(ana))
        assert_message(joined)
        assert joined["username"] == "Sistema" and joined["content"] == f"{ana} entrou no chat"
        assert joined["type"] == "join"
        count = await next_frame(a)
        assert set(count) == {"type", "onlineCount"} and count["type"] == "count"
        assert count["onlineCount"] == joined["onlineCount"] >= 1
        before = count["onlineCount"]

        async with join(mesh, bob) as b:
            seen = await next_frame(a, about(bob))
            assert seen["content"] == f"{bob} entrou no chat"
            assert (await next_frame(a)) == {"type": "count", "onlineCount": before + 1}

            await a.send(json.dumps({"content": "hi"}))
            for ws in (a, b):
                said = await next_frame(ws, lambda f: f.get("username") == ana and f.get("type") == "message")
                assert_message(said)
                assert said["content"] == "hi" and said["onlineCount"] == before + 1
        left = await next_frame(a, about(bob))
        assert left["username"] == "Sistema" and left["content"] == f"{bob} saiu do chat"
        assert left["type"] == "leave"
        assert (await next_frame(a)) == {"type": "count", "onlineCount": before}


async def test_no_name_is_anonymous(mesh):
    async with join(mesh, None) as ws:
        frame = await next_frame(ws, lambda f: f.get("type") == "join")
        assert frame["content"].endswith(" entrou no chat")
    async with join(mesh, "") as ws:
        await next_frame(ws, lambda f: f.get("content") == "Anonymous entrou no chat")


async def test_history_is_a_bare_array_oldest_first(mesh, http):
    who = name()
    async with join(mesh, who) as ws:
        for text in ("one", "two", "three"):
            await ws.send(json.dumps({"content": text}))
            await next_frame(ws, lambda f, t=text: f.get("content") == t)
    reply = await http.get("/api/messages", params={"limit": "50"})
    assert reply.status_code == 200
    history = reply.json()
    assert isinstance(history, list) and 4 <= len(history) <= 50
    for entry in history:
        assert set(entry) == HISTORY_KEYS, entry
    mine = [e["content"] for e in history if e["username"] == who]
    assert mine == ["one", "two", "three"]
    stamps = [e["timestamp"] for e in history]
    assert stamps == sorted(stamps)
    assert len((await http.get("/api/messages", params={"limit": "2"})).json()) == 2
    assert (len((await http.get("/api/messages", params={"limit": "nonsense"})).json())
            == min(50, len(history)))


async def test_one_room_two_shapes(mesh, http):
    """What Agora's own route posts to "general" shows on the seed socket, and the other way round."""
    seed, other = name(), name()
    async with join(mesh, seed) as ws:
        await next_frame(ws, about(seed))
        posted = await http.post("/v1/rooms/general/messages", json={"username": other, "text": "via v1"})
        assert posted.status_code == 200, posted.text
        frame = await next_frame(ws, lambda f: f.get("username") == other)
        assert frame["content"] == "via v1" and frame["type"] == "message"
        await ws.send(json.dumps({"content": "via the seed"}))
        await next_frame(ws, lambda f: f.get("content") == "via the seed")
    page = (await http.get("/v1/rooms/general/messages", params={"limit": 20})).json()["messages"]
    assert any(m["username"] == seed and m["text"] == "via the seed" for m in page)
