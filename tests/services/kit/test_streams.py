"""The kit's bounded fan-out: snapshot coalescing and sequenced logs with resume."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.errors import ResourceExhausted
from services.kit.streams import SequencedLog, SnapshotFeed


async def take(agen, n: int, timeout: float = 5.0) -> list:
    out = []

    async def run():
        async for item in agen:
            out.append(item)
            if len(out) == n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_snapshot_gives_current_value_at_once_then_coalesces():
    feed: SnapshotFeed[str, int] = SnapshotFeed(min_interval=0.05)
    feed.publish("poll", 1)
    stream = feed.subscribe("poll")
    assert await take(stream, 1) == [1]
    for v in range(2, 200):  # a burst faster than the interval
        feed.publish("poll", v)
    got = await take(stream, 1)
    assert got == [199], "a reader woken after a burst sees only the newest value"
    await stream.aclose()
    assert feed.subscribers("poll") == 0


async def test_snapshot_final_value_ends_every_subscriber():
    feed: SnapshotFeed[str, str] = SnapshotFeed(min_interval=0.01)
    results = []

    async def watch():
        results.append([v async for v in feed.subscribe("p", initial="open")])

    watchers = [asyncio.create_task(watch()) for _ in range(50)]
    await asyncio.sleep(0.05)
    feed.publish("p", "mid")
    await asyncio.sleep(0.05)
    feed.close("p", "closed")
    await asyncio.wait_for(asyncio.gather(*watchers), 5)
    assert all(r[0] == "open" and r[-1] == "closed" for r in results)


async def test_log_resume_replays_from_store_then_goes_live_without_gap_or_duplicate():
    log: SequencedLog[str, str] = SequencedLog(capacity=4)
    stored = {i: f"m{i}" for i in range(1, 11)}
    for i in range(1, 11):
        log.append("room", i, stored[i])  # the ring keeps only 7..10

    async def replay(after: int, upto: int):
        return [(s, stored[s]) for s in range(after + 1, upto + 1)]

    stream = log.subscribe("room", resume_from=2, replay=replay)
    first = await take(stream, 8)
    assert [s for s, _ in first] == list(range(3, 11))
    log.append("room", 11, "m11")
    log.append("room", 11, "dup")  # a redelivered event: ignored
    assert await take(stream, 1) == [(11, "m11")]
    await stream.aclose()


async def test_log_ends_a_subscriber_that_falls_behind_the_ring():
    log: SequencedLog[str, int] = SequencedLog(capacity=8)
    log.append("k", 1, 1)
    stream = log.subscribe("k")
    assert await take(stream, 1) == [(1, 1)]
    for i in range(2, 40):  # the reader does not read while 38 entries arrive
        log.append("k", i, i)
    with pytest.raises(ResourceExhausted) as info:
        await take(stream, 40)
    assert "resume_from=" in info.value.message


async def test_log_seed_after_restart_replays_gap_from_store():
    log: SequencedLog[str, int] = SequencedLog(capacity=8)
    log.seed("k", 5)  # the store already holds 1..5; this process has no entries in memory

    async def replay(after: int, upto: int):
        return [(s, s * 10) for s in range(after + 1, upto + 1)]

    got = await take(log.subscribe("k", resume_from=3, replay=replay), 2)
    assert got == [(4, 40), (5, 50)]
