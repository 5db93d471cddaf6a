"""Shared feeds (gateway/feeds.py): methods whose proto declares (agora.api.v1.feed) are one upstream
call per bridge for all identical subscriptions; each subscriber still gets exactly its stream.

The Mirror service's Topic (a shared log, admitted by AdmitTopic), History (a per-caller log
replayed from its start) and Scores (a shared snapshot) count their calls, so a test sees how many
upstream calls its subscribers cost."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket

import httpx
import pytest
import websockets
from prometheus_client import REGISTRY

from gateway import direct, feeds
from gateway.server import make_gateway_server

BUDGET = 64 * 1024  # the test bridge's per-subscriber byte budget


@pytest.fixture(scope="session")
async def feed_bridge(mesh):
    """A bridge of its own on the Mirror service, with a small budget and a short linger."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = make_gateway_server(mesh.descriptor_set, {"agora.testing.v1.Mirror": mesh.grpc_target},
                                 heartbeat_interval=0.2, feed_budget_bytes=BUDGET, graceful_shutdown=1.0)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def publish(client: httpx.AsyncClient, topic: str, text: str, count: int = 1) -> int:
    reply = await client.post(f"/v1/topics/{topic}:publish", json={"text": text, "count": count})
    assert reply.status_code == 200, reply.text
    return int(reply.json()["sequence"])


class SseReader:
    """One SSE subscriber: its events as (id, data, event) in order."""

    def __init__(self, client: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None):
        self.client, self.path = client, path
        self.headers = {"accept": "text/event-stream", **(headers or {})}
        self.events: list[tuple[int | None, dict, str]] = []
        self.status = 0
        self._stream = None
        self._lines = None

    async def __aenter__(self) -> SseReader:
        self._stream = self.client.stream("GET", self.path, headers=self.headers)
        self.response = await self._stream.__aenter__()
        self.status = self.response.status_code
        self._lines = self.response.aiter_lines()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._stream.__aexit__(*exc)

    async def next_event(self) -> tuple[int | None, dict, str]:
        ident, data, event = None, None, "message"
        async for line in self._lines:
            if line.startswith("id: "):
                ident = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line.startswith("event: "):
                event = line[7:]
            elif line == "" and data is not None:
                self.events.append((ident, data, event))
                return ident, data, event
        raise EOFError("the stream ended")

    async def take(self, n: int, timeout: float = 15.0) -> list[tuple[int | None, dict, str]]:
        return [await asyncio.wait_for(self.next_event(), timeout) for _ in range(n)]


@pytest.fixture
async def client(feed_bridge):
    async with httpx.AsyncClient(base_url=f"http://{feed_bridge}", timeout=15.0) as c:
        yield c


def calls(mesh, topic: str) -> int:
    return len(mesh.service.topic_calls.get(topic, []))


async def test_subscribers_share_one_upstream_call_and_see_the_same_sequence(mesh, client):
    topic = "open-share"
    readers = [SseReader(client, f"/v1/topics/{topic}:watch") for _ in range(5)]
    for reader in readers:
        await reader.__aenter__()
    try:
        assert {r.status for r in readers} == {200}
        await publish(client, topic, "entry", count=20)
        seen = [[(i, d["text"]) for i, d, _ in await r.take(20)] for r in readers]
        assert seen[0] == [(n, f"entry {n}") for n in range(1, 21)]
        assert all(s == seen[0] for s in seen)
        assert calls(mesh, topic) == 1, "five subscribers, one upstream call"
    finally:
        for reader in readers:
            await reader.__aexit__(None, None, None)


async def test_resume_from_the_ring_and_from_upstream_has_no_gap_and_no_repeat(mesh, client):
    topic = "open-resume"
    async with SseReader(client, f"/v1/topics/{topic}:watch") as first:
        await publish(client, topic, "e", count=5)
        assert [i for i, _, _ in await first.take(5)] == [1, 2, 3, 4, 5]
        # Inside the ring (it keeps 8): served from it, no new upstream call.
        async with SseReader(client, f"/v1/topics/{topic}:watch", {"last-event-id": "3"}) as ring:
            assert [i for i, _, _ in await ring.take(2)] == [4, 5]
            assert calls(mesh, topic) == 1
            await publish(client, topic, "e", count=20)  # 6..25: the ring now holds 18..25
            assert [i for i, _, _ in await ring.take(20)] == list(range(6, 26))
            await first.take(20)
            # Older than the ring: a call of its own from 1, then handed over to the shared feed.
            async with SseReader(client, f"/v1/topics/{topic}:watch", {"last-event-id": "1"}) as old:
                assert [i for i, _, _ in await old.take(24)] == list(range(2, 26))
                assert calls(mesh, topic) == 2
                await publish(client, topic, "e", count=3)
                assert [i for i, _, _ in await old.take(3)] == [26, 27, 28]
                assert [i for i, _, _ in await ring.take(3)] == [26, 27, 28]
                await publish(client, topic, "e", count=2)
                assert [i for i, _, _ in await old.take(2)] == [29, 30]
            assert calls(mesh, topic) == 2, "after the hand-over no further call"


def _stalled_sse(host: str, path: str) -> socket.socket:
    """A subscriber that reads nothing: a tiny receive buffer, the request sent, then silence."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    address, port = host.split(":")
    sock.connect((address, int(port)))
    sock.sendall(f"GET {path} HTTP/1.1\r\nhost: {host}\r\naccept: text/event-stream\r\n\r\n".encode())
    sock.setblocking(False)
    return sock


async def _read_to_end(sock: socket.socket) -> bytes:
    loop, chunks = asyncio.get_running_loop(), []
    while chunk := await loop.sock_recv(sock, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def _overflow(client: httpx.AsyncClient, healthy: SseReader, topic: str, n: int,
                    then=None) -> list:
    """Publish n frames of 4 KB, 5 at a time (the healthy reader keeps within its budget), until
    and past the moment a stalled subscriber falls behind; `then()` runs once at that moment."""
    before, got = _sample("agora_edge_feed_overflows_total"), []
    for _ in range(n // 5):
        await publish(client, topic, "x" * 4000, count=5)
        got += await healthy.take(5)
        if then is not None and _sample("agora_edge_feed_overflows_total") > before:
            then()
            then = None
    assert _sample("agora_edge_feed_overflows_total") > before, "the stalled subscriber fell behind"
    return got


async def test_a_stalled_subscriber_is_closed_resumably_and_the_others_get_everything(
        mesh, client, feed_bridge):
    topic = "open-stall"
    n = 3000
    reading: list[asyncio.Future] = []
    async with SseReader(client, f"/v1/topics/{topic}:watch") as healthy:
        stalled = _stalled_sse(feed_bridge, f"/v1/topics/{topic}:watch")
        await asyncio.sleep(0.5)  # attached (the bridge answers after its first-message window)
        # Once it has fallen behind, it reads again (within its grace): it gets its closing frame.
        got = await _overflow(client, healthy, topic, n,
                              lambda: reading.append(asyncio.ensure_future(_read_to_end(stalled))))
        assert [i for i, _, _ in got] == list(range(1, n + 1)), "the healthy subscriber got everything"
        raw = await asyncio.wait_for(reading[0], 30)  # the bridge closed it: read to the end
        stalled.close()
        text = raw.decode("utf-8", "replace")
        ids = [int(m) for m in re.findall(r"^id: (\d+)$", text, re.M)]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) < n, "what it got is a prefix"
        error = re.search(r"^event: error\ndata: (.*)$", text, re.M)
        assert error is not None, text[-500:]
        status = json.loads(error.group(1))
        assert status["code"] == 8  # RESOURCE_EXHAUSTED
        assert f"resume from sequence {ids[-1] if ids else 0}" in status["message"], "the last id it got"
        # It resumes where it was cut, without a gap, and catches up with the feed.
        async with SseReader(client, f"/v1/topics/{topic}:watch",
                             {"last-event-id": str(ids[-1] if ids else 0)}) as again:
            rest = await again.take(n - len(ids), timeout=60)
            assert [i for i, _, _ in rest] == list(range(len(ids) + 1, n + 1))


async def test_a_subscriber_that_never_reads_again_is_released_after_its_grace(
        mesh, client, feed_bridge, monkeypatch):
    monkeypatch.setattr(feeds, "OVERFLOW_GRACE", 0.5)
    topic = "open-dead"
    async with SseReader(client, f"/v1/topics/{topic}:watch") as healthy:
        stalled = _stalled_sse(feed_bridge, f"/v1/topics/{topic}:watch")
        await asyncio.sleep(0.5)
        subscribers = _sample("agora_edge_feed_subscribers")
        await _overflow(client, healthy, topic, 1000)
        for _ in range(200):  # its writer, stuck on a client that reads nothing, is let go
            if _sample("agora_edge_feed_subscribers") < subscribers:
                break
            await asyncio.sleep(0.05)
        assert _sample("agora_edge_feed_subscribers") == subscribers - 1, "released"
        await publish(client, topic, "after")
        [(ident, data, _)] = await healthy.take(1)
        assert (ident, data["text"]) == (1001, "after"), "the feed goes on for the others"
        # Its connection was aborted: what the kernel had already taken may still come, then the
        # end (or a reset); never the rest of the stream.
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := await asyncio.wait_for(asyncio.get_running_loop().sock_recv(stalled, 1 << 16), 30):
                chunks.append(chunk)
        stalled.close()
        raw = b"".join(chunks)
        ids = [int(m) for m in re.findall(r"^id: (\d+)$", raw.decode("utf-8", "replace"), re.M)]
        assert ids == list(range(1, len(ids) + 1)) and len(ids) < 1000


async def test_a_subscriber_without_rights_never_gets_the_frames_a_member_gets(mesh, client):
    topic = "club-inner"
    async with SseReader(client, f"/v1/topics/{topic}:watch", {"authorization": "Bearer member"}) as member:
        assert member.status == 200
        for headers in ({}, {"authorization": "Bearer outsider"}):
            async with SseReader(client, f"/v1/topics/{topic}:watch", headers) as outsider:
                assert outsider.status == 403
                body = json.loads(await outsider.response.aread())
                assert body["message"] == f"{topic} is for members"
        await publish(client, topic, "secret")
        [(ident, data, _)] = await member.take(1)
        assert (ident, data["text"]) == (1, "secret")
    assert calls(mesh, topic) == 1


async def test_per_caller_feeds_share_a_callers_tabs_and_replay_history(mesh, client):
    topic = "history-tabs"
    await publish(client, topic, "h", count=3)
    path = f"/v1/topics/{topic}:history"
    one = {"authorization": "Bearer u1"}
    async with SseReader(client, path, one) as tab1, SseReader(client, path, one) as tab2, \
            SseReader(client, path, {"authorization": "Bearer u2"}) as other:
        for reader in (tab1, tab2, other):
            assert [i for i, _, _ in await reader.take(3)] == [1, 2, 3], "the whole history first"
        made = mesh.service.topic_calls[topic]
        assert len(made) == 2, "u1's two tabs share a call; u2 has one of its own"
        assert sorted(m.get("authorization") for m in made) == ["Bearer u1", "Bearer u2"]
        await publish(client, topic, "h", count=2)
        for reader in (tab1, tab2, other):
            assert [i for i, _, _ in await reader.take(2)] == [4, 5]
        async with SseReader(client, path, one) as tab3:  # a late tab: the start is still in the ring
            assert [i for i, _, _ in await tab3.take(5)] == [1, 2, 3, 4, 5]
        assert len(mesh.service.topic_calls[topic]) == 2


async def test_a_snapshot_newcomer_gets_the_latest_at_once(mesh, client):
    topic = "scores-board"
    for _ in range(5):
        missing = await client.get("/v1/topics/scores-none:scores", headers={"accept": "text/event-stream"})
        if missing.status_code == 404:
            break
        # The refusal came after the bridge's first-message window (a loaded machine): then it is
        # the stream's closing frame instead.
        assert missing.status_code == 200 and '"code":5' in missing.text.replace(" ", ""), missing.text
    assert missing.status_code == 404, "a stream refused before its first frame is an HTTP answer"
    await publish(client, topic, "s", count=3)
    async with SseReader(client, f"/v1/topics/{topic}:scores") as first:
        [(ident, data, _)] = await first.take(1)
        assert (ident, data["text"]) == (3, "s 3")
        await publish(client, topic, "t", count=2)
        await asyncio.sleep(0.2)
        async with SseReader(client, f"/v1/topics/{topic}:scores") as late:
            [(ident, data, _)] = await late.take(1)
            assert ident == 5 and data["text"] == "t 2"
    assert calls(mesh, topic) == 1


async def test_out_of_range_resume_is_an_http_answer(client):
    topic = "open-range"
    await publish(client, topic, "r")
    reply = await client.get(f"/v1/topics/{topic}:watch",
                             headers={"accept": "text/event-stream", "last-event-id": "99"})
    assert reply.status_code == 400
    assert "beyond the latest sequence" in reply.json()["message"]


async def test_websocket_and_sse_subscribers_share_the_feed(mesh, client, feed_bridge):
    topic = "open-ws"
    async with SseReader(client, f"/v1/topics/{topic}:watch") as sse, \
            websockets.connect(f"ws://{feed_bridge}/v1/topics/{topic}:watch") as ws:
        await asyncio.sleep(0.3)  # the socket is attached once open
        await publish(client, topic, "w", count=3)
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]
        assert [(int(f["sequence"]), f["text"]) for f in frames] == [(1, "w 1"), (2, "w 2"), (3, "w 3")]
        assert [i for i, _, _ in await sse.take(3)] == [1, 2, 3]
    assert calls(mesh, topic) == 1


async def test_a_reader_that_lags_and_catches_up_gets_every_frame_in_order_by_both_paths(
        mesh, client, feed_bridge):
    """Frames go straight to a connection while its transport keeps up (direct.py) and are queued
    for its writer while it does not; switching between the two, nothing is lost or reordered."""
    topic = "open-lagging"
    sock = _stalled_sse(feed_bridge, f"/v1/topics/{topic}:watch")  # small buffers: it lags
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.5)  # attached
    def deliveries(path: str) -> float:
        return REGISTRY.get_sample_value("agora_edge_feed_deliveries_total", {"path": path}) or 0.0

    before = {path: deliveries(path) for path in ("direct", "queued")}
    text, ids, rounds, per_round = "", [], 20, 20
    for r in range(rounds):
        # 80 KB at once: more than the transport takes before it pauses, less than the budget
        # (64 KiB queued) on top of it.
        await publish(client, topic, "y" * 4000, count=per_round)
        while len(ids) < (r + 1) * per_round:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 15)
            assert chunk, "the bridge closed a subscriber that was within its budget"
            text += chunk.decode("utf-8", "replace")
            ids = [int(m) for m in re.findall(r"^id: (\d+)$", text, re.M)]
    sock.close()
    assert ids == list(range(1, rounds * per_round + 1))
    assert "event: error" not in text
    assert deliveries("direct") > before["direct"], "frames went straight to the connection"


class _Sink:
    """A connection whose transport keeps up while `open` is True (direct.py's sinks' interface)."""

    kind = direct.HTTP_CHUNK

    def __init__(self):
        self.open, self.wire = True, b""

    def writable(self) -> bool:
        return self.open

    def write(self, frame: bytes) -> None:
        self.wire += frame


class _Entry(feeds.Entry):
    def __init__(self, sequence: int):
        super().__init__(None, None, None, sequence)
        self._json = b'{"n":%d}' % sequence  # the payload, as the feed would have encoded it


async def test_a_subscriber_switches_between_direct_and_queued_writes_without_reordering():
    sub = feeds.Subscriber(feeds.SSE, feeds.LOG, budget=1 << 20, after=None)
    sink = sub.sink = _Sink()
    written = []  # what the writer sent through ASGI, in chunks as the wire carries them

    async def writer():
        async for frames in sub.frames():
            await asyncio.sleep(0)  # a send that takes a turn of the loop
            for frame in frames:
                written.append(frame)
                sink.wire += direct.wire(direct.HTTP_CHUNK, frame)

    task = asyncio.ensure_future(writer())
    assert [sub.offer(_Entry(n)) for n in (1, 2)] == [True, True]
    sink.open = False  # the transport paused: queued for the writer
    assert [sub.offer(_Entry(n)) for n in (3, 4)] == [False, False]
    sink.open = True  # it resumed, but 3 and 4 wait: 5 must not overtake them
    assert sub.offer(_Entry(5)) is False
    for _ in range(10):
        await asyncio.sleep(0)
    assert sub.offer(_Entry(6)) is True, "direct again once the writer has sent what waited"
    sub.end(None)
    await task
    ids = [int(m) for m in re.findall(rb"^id: (\d+)$", sink.wire, re.M)]
    assert ids == [1, 2, 3, 4, 5, 6] and len(written) == 3
    assert sub.sent_sequence == 6
