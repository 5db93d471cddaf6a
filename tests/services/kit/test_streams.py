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
    feed: SnapshotFeed[str, int] = SnapshotFeed(name="test", min_interval=0.05)
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
    feed: SnapshotFeed[str, str] = SnapshotFeed(name="test", min_interval=0.01)
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


async def test_snapshot_rate_is_per_key_and_every_subscriber_sees_each_tick():
    feed: SnapshotFeed[str, int] = SnapshotFeed(name="test", min_interval=0.05)
    feed.publish("poll", 0)
    seen: list[list[int]] = [[] for _ in range(200)]

    async def watch(i: int) -> None:
        async for value in feed.subscribe("poll"):
            seen[i].append(value)

    watchers = [asyncio.create_task(watch(i)) for i in range(200)]
    await asyncio.sleep(0.01)
    for v in range(1, 101):  # 100 changes over ~0.3 s: about 6 ticks of 50 ms
        feed.publish("poll", v)
        await asyncio.sleep(0.003)
    await asyncio.sleep(0.1)
    feed.close("poll", 1000)
    await asyncio.wait_for(asyncio.gather(*watchers), 5)
    first = seen[0]
    assert all(s == first for s in seen), "one tick per key: every subscriber got the same values"
    assert first[0] == 0 and first[-2:] == [100, 1000], \
        "the newest value before the close, then the final one"
    assert 3 <= len(first) <= 12, f"coalesced to the key's ticks, not one message per change: {first}"
    assert feed.subscribers("poll") == 0


async def test_snapshot_watcher_that_leaves_a_quiet_key_leaves_nothing_behind():
    feed: SnapshotFeed[str, int] = SnapshotFeed(name="test", min_interval=0.05)
    feed.publish("quiet", 1)
    for _ in range(50):
        stream = feed.subscribe("quiet")
        assert await take(stream, 1) == [1]
        waiting = asyncio.create_task(take(stream, 1))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await stream.aclose()
    assert feed.subscribers("quiet") == 0
    assert feed._slots["quiet"].waiters == []


async def test_log_resume_replays_from_store_then_goes_live_without_gap_or_duplicate():
    log: SequencedLog[str, str] = SequencedLog(name="test", capacity=4)
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
    log: SequencedLog[str, int] = SequencedLog(name="test", capacity=8)
    log.append("k", 1, 1)
    stream = log.subscribe("k")
    assert await take(stream, 1) == [(1, 1)]
    for i in range(2, 40):  # the reader does not read while 38 entries arrive
        log.append("k", i, i)
    with pytest.raises(ResourceExhausted) as info:
        await take(stream, 40)
    assert "resume_from=" in info.value.message


async def test_log_seed_after_restart_replays_gap_from_store():
    log: SequencedLog[str, int] = SequencedLog(name="test", capacity=8)
    log.seed("k", 5)  # the store already holds 1..5; this process has no entries in memory

    async def replay(after: int, upto: int):
        return [(s, s * 10) for s in range(after + 1, upto + 1)]

    got = await take(log.subscribe("k", resume_from=3, replay=replay), 2)
    assert got == [(4, 40), (5, 50)]
