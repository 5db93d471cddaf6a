"""The same flows through the bridge: the seed's routes, the /v1 routes, SSE and WebSocket."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse


@pytest.fixture
async def http(mesh):
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as client:
        yield client


async def poll_until(http, poll_id: str, predicate, timeout: float = 20.0, what: str = "the tally"):
    deadline = time.monotonic() + timeout
    while True:
        reply = (await http.get(f"/v1/polls/{poll_id}")).json()
        if predicate(reply["results"]):
            return reply
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}; last: {reply['results']}")
        await asyncio.sleep(0.05)


def votes(results: dict) -> list[int]:
    return [int(t.get("votes", 0)) for t in results["tallies"]]


async def test_create_vote_get_and_close_over_http(http):
    created = await http.post("/v1/polls",
                              json={"question": "Tabs or spaces?", "options": ["tabs", "spaces"]},
                              headers={"Authorization": "Bearer user-rita"})
    assert created.status_code == 200, created.text
    poll = created.json()["poll"]
    assert [o["text"] for o in poll["options"]] == ["tabs", "spaces"]
    replies = await asyncio.gather(*(http.post(f"/v1/polls/{poll['id']}/votes", json={"option": i % 2})
                                     for i in range(40)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies if r.status_code != 200][:1]
    await poll_until(http, poll["id"], lambda r: votes(r) == [20, 20], what="40 REST votes")

    keyed = (await http.post("/v1/polls", json={"question": "Keyed?", "options": ["a", "b", "c"],
                                                 "votePolicy": "VOTE_POLICY_ONE_PER_VOTER_KEY"},
                             headers={"Authorization": "Bearer user-rita"})).json()["poll"]
    first = await http.post(f"/v1/polls/{keyed['id']}/votes", json={"option": 2, "voterKey": "k1"})
    assert first.status_code == 200, first.text
    second = await http.post(f"/v1/polls/{keyed['id']}/votes", json={"option": 1, "voterKey": "k1"})
    assert second.status_code == 409 and second.json()["code"] == 6  # ALREADY_EXISTS

    denied = await http.post(f"/v1/polls/{poll['id']}:close", json={},
                             headers={"Authorization": "Bearer user-sam"})
    assert denied.status_code == 403
    closed = await http.post(f"/v1/polls/{poll['id']}:close", json={},
                             headers={"Authorization": "Bearer user-rita"})
    assert closed.status_code == 200 and closed.json()["poll"]["status"] == "POLL_STATUS_CLOSED"
    final = await poll_until(http, poll["id"], lambda r: r.get("final"), what="final results")
    assert votes(final["results"]) == [20, 20]
    late = await http.post(f"/v1/polls/{poll['id']}/votes", json={"option": 0})
    assert late.status_code == 400 and late.json()["code"] == 9  # FAILED_PRECONDITION


async def test_bad_input_over_http(http):
    missing = await http.get("/v1/polls/does-not-exist")
    assert missing.status_code == 404 and missing.json()["code"] == 5
    assert (await http.post("/v1/polls/does-not-exist/votes", json={"option": 0})).status_code == 404
    for options in (["one"], [f"o{i}" for i in range(101)]):
        bad = await http.post("/v1/polls", json={"question": "q", "options": options})
        assert bad.status_code == 400 and "options" in bad.text
    poll = (await http.post("/v1/polls", json={"question": "q", "options": ["a", "b"]})).json()["poll"]
    out_of_range = await http.post(f"/v1/polls/{poll['id']}/votes", json={"option": 7})
    assert out_of_range.status_code == 400
    body = out_of_range.json()
    violations = [v for d in body["details"] for v in d.get("fieldViolations", [])]
    assert [v["field"] for v in violations] == ["option"], body
    negative = await http.post(f"/v1/polls/{poll['id']}/votes", json={"option": -1})
    assert negative.status_code == 400


async def test_watch_over_sse_and_websocket(http, mesh):
    poll = (await http.post("/v1/polls", json={"question": "Live?", "options": ["yes", "no"]},
                            headers={"Authorization": "Bearer user-uma"})).json()["poll"]
    seen_sse: list[dict] = []
    seen_ws: list[dict] = []

    async def sse() -> None:
        async with aconnect_sse(http, "GET", f"/v1/polls/{poll['id']}:watch", timeout=30) as source:
            async for event in source.aiter_sse():
                if event.event == "error":
                    raise AssertionError(event.data)
                if event.data:
                    seen_sse.append(json.loads(event.data))
                    if seen_sse[-1].get("final"):
                        return

    async def ws() -> None:
        async with websockets.connect(f"{mesh.ws_url}/v1/polls/{poll['id']}:watch") as socket:
            async for frame in socket:
                seen_ws.append(json.loads(frame))
                if seen_ws[-1].get("final"):
                    return

    watchers = [asyncio.create_task(sse()), asyncio.create_task(ws())]
    deadline = time.monotonic() + 10
    while not (seen_sse and seen_ws):
        assert time.monotonic() < deadline, "the watchers got no first snapshot"
        await asyncio.sleep(0.02)
    for i in range(7):
        voted = await http.post(f"/v1/polls/{poll['id']}/votes", json={"option": int(i < 4)})
        assert voted.status_code == 200
    await poll_until(http, poll["id"], lambda r: votes(r) == [3, 4], what="7 votes")
    await http.post(f"/v1/polls/{poll['id']}:close", json={}, headers={"Authorization": "Bearer user-uma"})
    await asyncio.wait_for(asyncio.gather(*watchers), 20)
    for seen in (seen_sse, seen_ws):
        assert votes(seen[-1]["results"]) == [3, 4] and seen[-1]["final"]
        sequences = [int(m.get("sequence", 0)) for m in seen]
        assert sequences == sorted(set(sequences))
