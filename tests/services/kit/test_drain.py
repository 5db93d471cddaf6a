"""Sign-out drains a client stream (services/kit/revocation.Drain): the frame in hand finishes, later
frames are never acted on, and the stream may end once it has sent what that frame produced."""

from __future__ import annotations

import asyncio

from services.kit import revocation
from services.kit.revocation import Drain


async def frames(queue: asyncio.Queue):
    while (item := await queue.get()) is not None:
        yield item


async def test_the_frame_in_hand_finishes_and_later_ones_are_dropped(monkeypatch):
    monkeypatch.setattr(revocation, "DRAIN_QUIET", 0.05)
    drain, inbox = Drain(), asyncio.Queue()
    acted: list[str] = []
    working = asyncio.Event()
    release = asyncio.Event()

    async def behaviour():
        async for frame in drain.gate(frames(inbox)):
            working.set()
            await release.wait()  # the bid being stored while the session ends
            acted.append(frame)
            drain.sent()

    task = asyncio.ensure_future(behaviour())
    await inbox.put("b1")
    await working.wait()
    drain.shut()
    settled = asyncio.ensure_future(drain.settled())
    await inbox.put("b2")  # sent after the session ended
    await asyncio.sleep(0.1)
    assert not settled.done(), "ended while a frame was still being worked on"
    release.set()
    await asyncio.wait_for(settled, 1)
    await asyncio.wait_for(task, 1)  # the behaviour saw the client stop sending
    assert acted == ["b1"]


async def test_an_idle_stream_settles_after_the_quiet_period(monkeypatch):
    monkeypatch.setattr(revocation, "DRAIN_QUIET", 0.05)
    drain, inbox = Drain(), asyncio.Queue()
    seen: list[str] = []

    async def behaviour():
        async for frame in drain.gate(frames(inbox)):
            seen.append(frame)

    task = asyncio.ensure_future(behaviour())
    await asyncio.sleep(0)
    drain.shut()
    await asyncio.wait_for(drain.settled(), 1)
    await inbox.put("late")
    await asyncio.wait_for(task, 1)
    assert seen == []


async def test_a_stream_that_never_goes_quiet_is_ended_at_the_limit(monkeypatch):
    monkeypatch.setattr(revocation, "DRAIN_QUIET", 0.05)
    monkeypatch.setattr(revocation, "DRAIN_LIMIT", 0.3)
    drain = Drain()
    drain.shut()

    async def busy_room():
        while True:  # other people keep talking in the room
            drain.sent()
            await asyncio.sleep(0.01)

    talker = asyncio.ensure_future(busy_room())
    try:
        await asyncio.wait_for(drain.settled(), 5)  # a hang guard; the limit is 0.3 s
    finally:
        talker.cancel()
