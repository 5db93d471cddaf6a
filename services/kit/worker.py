"""A background worker: one task that runs a step over and over, waiting between steps until a
deadline or a wake-up, whichever comes first, and backing off when a step fails.

The step is an async function returning how long the worker may wait before the next step:
`0` (or less) runs it again at once (there is more to do), a number of seconds waits at most that
long, `None` waits for `wake()` alone. `wake()` cuts a wait short; a wake that arrives while a step
runs is kept (the wake flag is cleared before each step, never after), so it leads to another step.

A step that raises is handed to `on_error(exc, retry_in)` (default: a warning in the log), then
the worker sleeps `retry_in` seconds, doubled after each failure in a row up to `max_backoff`, back
to `backoff` after a step succeeds. A wake does not cut a back-off short (producers wake on every
write, and a failing store or broker should not be hammered); it is kept for the next step.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("agora.worker")

Step = Callable[[], Awaitable[float | None]]
OnError = Callable[[Exception, float], Awaitable[None] | None]


class Worker:
    """Runs `step` in a task of its own between `start()` and `stop()` (see the module's docstring)."""

    def __init__(self, step: Step, *, name: str, backoff: float = 0.1, max_backoff: float = 5.0,
                 on_error: OnError | None = None) -> None:
        self.step, self.name = step, name
        self.backoff, self.max_backoff = backoff, max(max_backoff, backoff)
        self.on_error = on_error
        self._woken = False
        self._waiter: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wake(self) -> None:
        """Run the next step now: cuts the current wait short, or follows the step that is running."""
        self._woken = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def start(self) -> None:
        """Start the task; a worker already started keeps its one task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task, whether it waits or runs a step, and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task})  # the caller's own cancellation still reaches the caller
        if not task.cancelled() and task.exception() is not None:
            log.error("%s ended with an error", self.name, exc_info=task.exception())

    async def _failed(self, exc: Exception, retry_in: float) -> None:
        if self.on_error is None:
            log.warning("%s failed (%s); retrying in %.1fs", self.name, exc, retry_in)
            return
        try:
            outcome = self.on_error(exc, retry_in)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:  # noqa: BLE001 - a failing error hook must not end the worker
            log.exception("%s: the error hook failed on %r", self.name, exc)

    async def _run(self) -> None:
        retry_in = self.backoff
        while True:
            self._woken = False  # before the step: a wake during the step is not lost
            try:
                wait = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - handed to on_error; the worker backs off and goes on
                await self._failed(exc, retry_in)
                await asyncio.sleep(retry_in)
                retry_in = min(retry_in * 2, self.max_backoff)
                continue
            retry_in = self.backoff
            if wait is None or wait > 0:
                await self._sleep(wait)
            else:
                await asyncio.sleep(0)  # a step that never suspends must not starve the loop

    async def _sleep(self, timeout: float | None) -> None:
        """Until `wake()` or `timeout` seconds (None: until `wake()`).

        A future of our own rather than `asyncio.wait_for(event.wait(), timeout)`: on Python 3.11
        wait_for returns normally when a cancellation and the event arrive in the same loop turn
        (the cancellation is lost), and a stop() right after a wake() then waited forever."""
        if self._woken:
            return
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _settle, waiter)
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None


def _settle(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
