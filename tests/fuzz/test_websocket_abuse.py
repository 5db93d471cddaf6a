"""WebSocket abuse on the bridge: huge frames, floods, invalid JSON. Each ends in a close code that says
why, the bridge process lives and answers, memory stays bounded."""

from __future__ import annotations

import asyncio

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.fuzz.conftest import MAX_MESSAGE_BYTES


async def _close_code(ws, send) -> int:
    try:
        await send(ws)
        async with asyncio.timeout(20):
            while True:
                await ws.recv()
    except ConnectionClosed:
        pass
    return ws.close_code


async def test_huge_frames_floods_and_invalid_json_are_closed_with_a_reason(fuzz_mesh):
    base = fuzz_mesh.base_url.replace("http", "ws")
    rss_before = fuzz_mesh.rss_kb()
    results = {}
    for round_ in range(3):
        async with connect(f"{base}/ws?username=abuser{round_}", max_size=None) as ws:
            results["huge frame"] = await _close_code(ws, lambda ws: ws.send("x" * (MAX_MESSAGE_BYTES * 4)))
        assert results["huge frame"] == 1009, results

        async def flood(ws):
            for i in range(2000):
                await ws.send(f'{{"text": "spam {i}"}}')

        async with connect(f"{base}/ws?username=flooder{round_}") as ws:
            results["flood"] = await _close_code(ws, flood)
        assert results["flood"] in (1008, 1009), results

        async with connect(f"{base}/ws?username=garbler{round_}") as ws:
            results["invalid json"] = await _close_code(ws, lambda ws: ws.send("{not json"))
        assert results["invalid json"] == 4003, results

        # a server stream: junk frames are ignored, bounded
        async with connect(f"{base}/v1/polls/none:watch") as ws:
            results["server-stream flood"] = await _close_code(ws, flood)
        assert results["server-stream flood"] in (1008, 4005), results
    assert fuzz_mesh.alive(), fuzz_mesh.log_text()[-3000:]
    async with httpx.AsyncClient(base_url=fuzz_mesh.base_url, timeout=10) as http:
        assert (await http.get("/health")).status_code == 200
    grown = fuzz_mesh.rss_kb() - rss_before
    print(f"\nWebSocket abuse close codes: {results}; RSS +{grown} KiB")
    assert grown < 150_000, f"RSS grew by {grown} KiB"
