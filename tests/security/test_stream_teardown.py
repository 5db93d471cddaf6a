"""Streams cut abruptly leave no ERROR in the mesh's log (no "Task was destroyed but it is pending!",
no "aclose(): asynchronous generator is already running", no traceback).

Its own `agora up` (tests/security/mesh.py), so the log holds only this test's traffic: SSE and
WebSocket streams of polls, auctions and chat opened, read a little, then cut (task cancelled,
socket closed without a goodbye), several rounds; then the captured log is checked.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import websockets

from tests.logcheck import error_lines
from tests.security.conftest import bearer, sign_up
from tests.security.mesh import Mesh

ROUNDS = 4


@pytest.fixture
def teardown_mesh(tmp_path):
    mesh = Mesh(tmp_path).start()
    try:
        yield mesh
    finally:
        mesh.stop()


async def _sse_cut(http: httpx.AsyncClient, url: str) -> None:
    async def read() -> None:
        async with http.stream("GET", url, headers={"accept": "text/event-stream"}) as r:
            async for _ in r.aiter_lines():
                pass

    task = asyncio.ensure_future(read())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _ws_cut(url: str, headers: dict, frames: list[dict]) -> None:
    ws = await websockets.connect(url, additional_headers=headers)
    for frame in frames:
        await ws.send(json.dumps(frame))
    await asyncio.sleep(0.2)
    ws.transport.abort()  # no close frame: the peer just goes away


async def test_cut_streams_log_no_error(teardown_mesh):
    async with httpx.AsyncClient(base_url=teardown_mesh.base_url, timeout=30) as http:
        user, other = await sign_up(http), await sign_up(http)
        poll = (await http.post("/v1/polls", headers=bearer(user),
                                json={"question": "teardown?", "options": ["a", "b"]})).json()["poll"]["id"]
        end = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
        auction = (await http.post("/v1/auctions", headers=bearer(user), json={
            "product_name": "lot", "starting_price": {"currency_code": "USD", "amount_minor": "100"},
            "auction_end": end})).json()["auction"]["id"]
        room = f"teardown-{uuid.uuid4().hex[:6]}"
        assert (await http.post("/v1/rooms", headers=bearer(user),
                                json={"room_id": room, "title": "t"})).status_code == 200
        ws_url = teardown_mesh.base_url.replace("http", "ws", 1)
        for n in range(ROUNDS):
            await asyncio.gather(
                _sse_cut(http, f"/v1/polls/{poll}:watch"),
                _sse_cut(http, f"/v1/auctions/{auction}:watch"),
                _sse_cut(http, f"/v1/rooms/{room}:watch"),
                _ws_cut(f"{ws_url}/v1/polls/{poll}:watch", {}, []),
                _ws_cut(f"{ws_url}/v1/auctions/{auction}/bidstream", bearer(other),
                        [{}, {"amount": {"currency_code": "USD", "amount_minor": str(200 + n)}}]),
                _ws_cut(f"{ws_url}/v1/rooms/{room}/chat", bearer(user),
                        [{"room_id": room}, {"text": f"m{n}"}]),
                http.post(f"/v1/polls/{poll}/votes",
                          json={"option": n % 2, "voter_key": f"v{n}", "request_id": f"v{n}"}),
                http.post(f"/v1/rooms/{room}/messages", headers=bearer(user), json={"text": f"s{n}"}),
            )
        await asyncio.sleep(2.0)  # let the mesh notice every cut
        assert (await http.get("/health")).status_code == 200
    teardown_mesh.stop()
    bad = error_lines(teardown_mesh.log_text())
    assert not bad, "ERROR lines in the mesh's log:\n" + "\n".join(bad[:20])
