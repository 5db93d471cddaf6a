"""The kit Worker: one task running a step, waiting between steps until a deadline or a wake-up,
backing off on failures, and ending promptly on stop. Timeouts here only guard against hangs."""

from __future__ import annotations

import asyncio

import pytest

from services.kit.worker import Worker

HANG = 10.0  # seconds: far beyond anything the tests wait for, only so a bug fails instead of hanging
FOREVER = 3600.0  # a wait no test lives to see end by itself


class Steps:
    """A step function that counts its calls and reports each one on a queue."""

    def __init__(self, wait: float | None = FOREVER) -> None:
        self.wait = wait
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.done: asyncio.Queue[int] = asyncio.Queue()
        self.gate: asyncio.Event | None = None  # when set up, each step waits for it
        self.entered = asyncio.Event()
        self.failures: list[Exception] = []  # raised, one a step, before any step succeeds

    async def __call__(self) -> float | None:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            self.entered.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                raise self.failures.pop(0)
            return self.wait
        finally:
            self.running -= 1
            self.done.put_nowait(self.calls)

    async def next_done(self) -> int:
        return await asyncio.wait_for(self.done.get(), HANG)


@pytest.mark.parametrize("wait", [FOREVER, None], ids=["timed wait", "wait for a wake alone"])
async def test_wake_cuts_the_wait_short(wait):
    steps = Steps(wait=wait)
    worker = Worker(steps, name="test-worker")
    await worker.start()
    try:
        assert await steps.next_done() == 1
        worker.wake()
        assert await steps.next_done() == 2
    finally:
        await worker.stop()


async def test_a_wake_during_a_step_leads_to_another_step():
    steps = Steps(wait=FOREVER)
    steps.gate = asyncio.Event()
    worker = Worker(steps, name="test-worker")
    await worker.start()
    try:
        await asyncio.wait_for(steps.entered.wait(), HANG)
        worker.wake()  # arrives while the first step runs
        steps.gate.set()
        assert await steps.next_done() == 1
        assert await steps.next_done() == 2  # no further wake: only the one during the step
    finally:
        await worker.stop()


async def test_a_failing_step_backs_off_and_recovers():
    steps = Steps(wait=FOREVER)
    steps.failures = [RuntimeError("store away"), RuntimeError("still away"), RuntimeError("again")]
    seen: list[tuple[str, float]] = []

    async def on_error(exc: Exception, retry_in: float) -> None:
        seen.append((str(exc), retry_in))

    worker = Worker(steps, name="test-worker", backoff=0.01, max_backoff=0.02, on_error=on_error)
    await worker.start()
    try:
        for expected in (1, 2, 3, 4):
            assert await steps.next_done() == expected
        # doubling, bounded by max_backoff
        assert seen == [("store away", 0.01), ("still away", 0.02), ("again", 0.02)]
        assert not steps.failures  # the fourth step succeeded: the worker waits for a wake now
        steps.failures = [RuntimeError("later")]
        worker.wake()
        assert await steps.next_done() == 5
        assert await steps.next_done() == 6
        assert seen[-1] == ("later", 0.01)  # a success put the back-off back at its start
    finally:
        await worker.stop()


async def test_a_failing_error_hook_does_not_end_the_worker():
    steps = Steps(wait=FOREVER)
    steps.failures = [RuntimeError("store away")]

    def on_error(exc: Exception, retry_in: float) -> None:
        raise ValueError("the hook is broken too")

    worker = Worker(steps, name="test-worker", backoff=0.01, on_error=on_error)
    await worker.start()
    try:
        assert await steps.next_done() == 1
        assert await steps.next_done() == 2
        assert worker.running
    finally:
        await worker.stop()


async def test_stop_during_a_wait_ends_promptly():
    steps = Steps(wait=FOREVER)
    worker = Worker(steps, name="test-worker")
    await worker.start()
    assert await steps.next_done() == 1
    await asyncio.wait_for(worker.stop(), HANG)
    assert not worker.running


async def test_stop_during_a_step_ends_promptly():
    steps = Steps(wait=FOREVER)
    steps.gate = asyncio.Event()  # never set: the step runs until cancelled
    worker = Worker(steps, name="test-worker")
    await worker.start()
    await asyncio.wait_for(steps.entered.wait(), HANG)
    await asyncio.wait_for(worker.stop(), HANG)
    assert not worker.running
    assert steps.running == 0  # the step was cancelled, not left behind


async def test_stop_during_a_back_off_ends_promptly():
    steps = Steps(wait=FOREVER)
    steps.failures = [RuntimeError("store away")]
    worker = Worker(steps, name="test-worker", backoff=FOREVER, on_error=lambda exc, retry_in: None)
    await worker.start()
    assert await steps.next_done() == 1
    await asyncio.wait_for(worker.stop(), HANG)
    assert not worker.running


async def test_start_twice_runs_one_task():
    steps = Steps(wait=0)
    steps.gate = asyncio.Event()
    worker = Worker(steps, name="test-worker")
    await worker.start()
    await worker.start()
    try:
        await asyncio.wait_for(steps.entered.wait(), HANG)
        for _ in range(5):
            await asyncio.sleep(0)  # a second task, had there been one, would enter its step now
        assert steps.running == 1
        assert len([t for t in asyncio.all_tasks() if t.get_name() == "test-worker"]) == 1
        steps.gate.set()
        for expected in (1, 2, 3):
            assert await steps.next_done() == expected
        assert steps.most_running == 1
    finally:
        await worker.stop()


async def test_restarts_after_stop():
    steps = Steps(wait=FOREVER)
    worker = Worker(steps, name="test-worker")
    await worker.start()
    assert await steps.next_done() == 1
    await worker.stop()
    await worker.stop()  # stopping a stopped worker does nothing
    await worker.start()
    try:
        assert await steps.next_done() == 2
    finally:
        await worker.stop()


@pytest.mark.parametrize("wait", [0, -1.0])
async def test_a_step_due_already_runs_again_at_once(wait):
    steps = Steps(wait=wait)
    worker = Worker(steps, name="test-worker")
    await worker.start()
    try:
        assert await steps.next_done() == 1
        assert await steps.next_done() == 2
    finally:
        await worker.stop()


async def test_stop_right_after_a_wake_ends_the_worker():
    """A wake and the stop's cancellation in the same loop turn: the cancellation must not be lost
    (asyncio.wait_for on Python 3.11 returned normally there, and stop() waited forever)."""
    steps = 0

    async def step() -> float:
        nonlocal steps
        steps += 1
        return 30.0

    for _ in range(20):
        worker = Worker(step, name="wake-then-stop")
        await worker.start()
        await asyncio.sleep(0.01)  # the worker waits now
        worker.wake()
        await asyncio.wait_for(worker.stop(), 10)
        assert not worker.running
