"""Several bridge processes on one port: `--workers N` (AGORA_GATEWAY_WORKERS).

The parent starts N workers; each is a full bridge (its own uvicorn server, upstream channels and
live feeds) listening on its own SO_REUSEPORT socket on the same host:port, and the kernel spreads
new connections among them. The parent itself serves nothing: it holds the port bound (not
listening, so no connection is ever queued on it) so that nothing else can take it while a worker
restarts, and it
- waits until every worker serves; one that cannot start fails the command with its error, and the
  others are stopped;
- forwards SIGTERM/SIGINT and waits for the workers' graceful drain (exit 0 when all stop cleanly;
  a second signal kills them at once);
- restarts a worker that dies unexpectedly, after a short backoff, at most `RESTARTS_PER_MINUTE`
  times a minute per worker; past that it stops the rest and exits 1, so the orchestrator sees a
  crash loop instead of a pool that silently shrank;
- gives the workers one prometheus-client multiprocess directory (PROMETHEUS_MULTIPROC_DIR, created
  and removed here unless the environment names one), so /metrics on any worker reports them all.

Workers are multiprocessing "spawn" children rather than `python -m ...` subprocesses: the caller
hands over a picklable function with its arguments (the launcher's Settings, or `python -m
gateway`'s options) and each worker runs exactly that, with no command line to rebuild and no
environment to re-read; a Pipe carries back "serving" or the error that kept it from starting, and
its end-of-file tells a worker that the parent is gone. Spawn (never fork) gives each worker a fresh
interpreter that shares no event loop, channel, feed or metric with the parent or its siblings.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from gateway.server import bound_socket, reuse_port_supported

log = logging.getLogger("agora.gateway.workers")

RESTARTS_PER_MINUTE = 5
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 8.0
_START_TIMEOUT = 120.0  # a worker that neither serves nor fails by then is stuck: the command fails
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkersFailed(Exception):
    """The pool could not start (a worker's own error), or a worker crashed too often."""


@dataclass(frozen=True)
class Worker:
    """What a worker's target gets: its index (0..N-1), the port every worker binds (the one the
    parent reserved, also when 0 was asked for), and `ready()` to call once it serves."""

    index: int
    port: int
    _conn: Connection

    def ready(self) -> None:
        self._conn.send(("ready", os.getpid()))


WorkerTarget = Callable[[Worker], int]  # picklable: a module-level function or a functools.partial of one


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _watch_parent(conn: Connection) -> None:
    """The parent never writes: end-of-file means it is gone, so drain and exit like on SIGTERM."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            conn.recv()
    os.kill(os.getpid(), signal.SIGTERM)


def _worker_main(target: WorkerTarget, index: int, port: int, conn: Connection) -> None:
    threading.Thread(target=_watch_parent, args=(conn,), name="parent-watch", daemon=True).start()
    try:
        code = target(Worker(index, port, conn))
    except BaseException as exc:  # every way a worker ends is reported to the parent
        with contextlib.suppress(OSError):
            conn.send(("failed", _describe(exc)))
        if not isinstance(exc, Exception):
            raise
        # a bind error says it all; anything else is a bug, whose traceback goes to the log
        log.error("gateway worker %d stopped: %s", index, _describe(exc),
                  exc_info=None if isinstance(exc, OSError) else exc)
        sys.exit(1)
    sys.exit(code)


@dataclass
class _Slot:
    index: int
    process: Any = None  # multiprocessing.context.SpawnProcess
    conn: Connection | None = None
    serving: bool = False
    crashes: collections.deque = field(default_factory=collections.deque)
    restart_at: float | None = None


class _Supervisor:
    def __init__(self, target: WorkerTarget, count: int, port: int, grace: float,
                 announce: Callable[[str], None]) -> None:
        self.target, self.port, self.grace, self.announce = target, port, grace, announce
        self.context = multiprocessing.get_context("spawn")
        self.slots = [_Slot(i) for i in range(count)]
        self.signals = 0
        self.metrics_dir: str | None = None

    # -- processes

    def spawn(self, slot: _Slot) -> None:
        mine, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker_main, args=(self.target, slot.index, self.port, theirs),
                                       name=f"agora-gateway-worker-{slot.index}")
        process.start()
        theirs.close()  # only the worker holds its end: its end-of-file is then the parent's exit
        slot.process, slot.conn, slot.serving, slot.restart_at = process, mine, False, None

    def reap(self, slot: _Slot) -> int | None:
        """Forget the slot's exited process; its exit code."""
        process, slot.process = slot.process, None
        if process is None:
            return None
        process.join()
        if slot.conn is not None:
            slot.conn.close()
            slot.conn = None
        if self.metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(process.pid, self.metrics_dir)  # its live gauges
        code = process.exitcode
        process.close()
        return code

    def alive(self) -> list[_Slot]:
        return [s for s in self.slots if s.process is not None]

    def read(self, slot: _Slot) -> tuple[str, object] | None:
        try:
            return slot.conn.recv() if slot.conn is not None else None
        except (EOFError, OSError):
            slot.conn.close()
            slot.conn = None
            return None

    # -- the parent's loop

    def on_signal(self, signum: int, _frame: object) -> None:
        self.signals += 1
        if self.signals > 1:  # a second Ctrl-C or SIGTERM: no more waiting for the drain
            for slot in self.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.process.pid, signal.SIGKILL)

    def waitables(self, wakeup: socket.socket) -> list[Any]:
        objects: list[Any] = [wakeup]
        for slot in self.alive():
            objects.append(slot.process.sentinel)
            if slot.conn is not None:
                objects.append(slot.conn)
        return objects

    def start_all(self, wakeup: socket.socket) -> bool:
        """Every worker serving (True), or a signal came first (False); raises WorkersFailed."""
        for slot in self.slots:
            self.spawn(slot)
        deadline = time.monotonic() + _START_TIMEOUT
        while not all(s.serving for s in self.slots):
            if self.signals:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkersFailed(f"a gateway worker did not start serving within {_START_TIMEOUT:.0f} s")
            ready = wait(self.waitables(wakeup), timeout=left)
            if wakeup in ready:
                _drain(wakeup)
            if self.signals:  # (a Ctrl-C reaches the workers too: what they report now is no failure)
                return False
            for slot in self.alive():
                if slot.conn in ready:
                    message = self.read(slot)
                    if message is not None and message[0] == "ready":
                        slot.serving = True
                        self.announce(f"gateway worker {slot.index} serving (pid {message[1]})")
                    elif message is not None:
                        raise WorkersFailed(f"gateway worker {slot.index} could not start: {message[1]}")
                if slot.process.sentinel in ready and not slot.serving:
                    if slot.conn is not None and slot.conn.poll():
                        message = self.read(slot)
                        if message is not None and message[0] == "failed":
                            raise WorkersFailed(f"gateway worker {slot.index} could not start: {message[1]}")
                    code = self.reap(slot)
                    raise WorkersFailed(f"gateway worker {slot.index} exited with {_exit(code)} "
                                        "before it served")
        return True

    def supervise(self, wakeup: socket.socket) -> None:
        """Until a signal: restart what dies; raises WorkersFailed when one crash-loops."""
        while not self.signals:
            now = time.monotonic()
            due = [s.restart_at for s in self.slots if s.restart_at is not None]
            timeout = max(0.0, min(due) - now) if due else None
            ready = wait(self.waitables(wakeup), timeout=timeout)
            if wakeup in ready:
                _drain(wakeup)
            if self.signals:
                return
            for slot in self.alive():
                if slot.conn is not None and slot.conn in ready:
                    message = self.read(slot)
                    if message is not None and message[0] == "ready":
                        slot.serving = True
                        self.announce(f"gateway worker {slot.index} serving again (pid {message[1]})")
                    elif message is not None:
                        log.error("gateway worker %d could not start: %s", slot.index, message[1])
                if slot.process.sentinel in ready:
                    pid = slot.process.pid
                    code = self.reap(slot)
                    self.schedule_restart(slot, pid, code)
            now = time.monotonic()
            for slot in self.slots:
                if slot.restart_at is not None and slot.restart_at <= now:
                    self.spawn(slot)
                    log.info("gateway worker %d restarted (pid %s)", slot.index, slot.process.pid)

    def schedule_restart(self, slot: _Slot, pid: int, code: int | None) -> None:
        now = time.monotonic()
        slot.crashes.append(now)
        while slot.crashes and slot.crashes[0] < now - 60:
            slot.crashes.popleft()
        if len(slot.crashes) > RESTARTS_PER_MINUTE:
            raise WorkersFailed(f"gateway worker {slot.index} died {len(slot.crashes)} times within a minute "
                                f"(last: pid {pid}, {_exit(code)}); stopping the pool")
        delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (len(slot.crashes) - 1))
        slot.restart_at = now + delay
        log.warning("gateway worker %d (pid %s) exited unexpectedly with %s; restarting it in %.1f s",
                    slot.index, pid, _exit(code), delay)

    def stop_all(self) -> bool:
        """SIGTERM to every worker, wait for the drain (then SIGKILL); True if every one exited 0."""
        clean = True
        for slot in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for slot in self.alive():
            slot.process.join(max(0.0, deadline - time.monotonic()))
            if slot.process.exitcode is None:
                log.error("gateway worker %d (pid %s) did not stop within %.0f s; killing it",
                          slot.index, slot.process.pid, self.grace)
                slot.process.kill()
            code = self.reap(slot)
            if code != 0:
                clean = False
                log.error("gateway worker %d stopped with %s", slot.index, _exit(code))
        return clean


def bridge_worker(descriptors: str | None, upstreams: dict[str, str], host: str, options: dict[str, Any],
                  worker: Worker) -> int:
    """The worker target of `python -m gateway --workers N`: its bridge on the shared port until
    SIGTERM/SIGINT, then the drain and exit 0 (here, not in gateway/__main__.py: a spawned child
    cannot import a package's __main__)."""
    from gateway.__main__ import read_descriptors

    return asyncio.run(_serve_bridge(read_descriptors(descriptors), upstreams, host, options, worker))


async def _serve_bridge(blob: bytes, upstreams: dict[str, str], host: str, options: dict[str, Any],
                        worker: Worker) -> int:
    from gateway.server import serve_gateway

    ready, stop = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # drain and exit 0, as `agora serve gateway` does
        loop.add_signal_handler(sig, stop.set)
    serving = asyncio.create_task(serve_gateway(blob, upstreams, host, worker.port, ready_event=ready,
                                                stop_event=stop, reuse_port=True, worker=worker.index,
                                                **options))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if ready.is_set():
        worker.ready()
    await serving
    return 0


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def _say(line: str) -> None:
    print(line, flush=True)  # at once, also when stdout is a file or a pipe


def _drain(wakeup: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while wakeup.recv(64):
            pass


def supervise(target: WorkerTarget, count: int, *, host: str, port: int, grace: float,
              announce: Callable[[str], None] | None = None) -> int:
    """Run `count` workers of `target` on host:port until SIGTERM/SIGINT; 0 when all stopped cleanly.

    `grace` is how long the workers get to drain after the signal before they are killed. Raises
    WorkersFailed (message for a person) when the pool cannot start or a worker crash-loops; every
    worker is stopped first. Call from the main thread (it installs SIGTERM/SIGINT handlers)."""
    if count < 1:
        raise ValueError("the bridge needs at least 1 worker")
    if not reuse_port_supported():
        raise WorkersFailed(f"--workers {count} needs SO_REUSEPORT with load balancing (Linux); "
                            f"{sys.platform} lacks it: run one worker per process and port")
    try:
        reserved = bound_socket(host, port, reuse_port=True)
    except OSError as exc:
        raise WorkersFailed(_describe(exc)) from None
    announce = announce or _say
    supervisor = _Supervisor(target, count, reserved.getsockname()[1], grace, announce)
    created_dir = _MULTIPROC_ENV not in os.environ
    supervisor.metrics_dir = (os.environ.get(_MULTIPROC_ENV)
                              or tempfile.mkdtemp(prefix="agora-gateway-metrics-"))
    # A given directory may hold the files of workers of an earlier run killed outright (a pod's
    # container restarted): their live gauges would go on being counted. prometheus-client's rule
    # is to empty it before the processes start; only this supervisor's workers write there.
    for stale in Path(supervisor.metrics_dir).glob("*.db"):
        stale.unlink(missing_ok=True)
    os.environ[_MULTIPROC_ENV] = supervisor.metrics_dir  # the spawned workers inherit it
    wakeup, wakeup_in = socket.socketpair()
    wakeup.setblocking(False)
    wakeup_in.setblocking(False)
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous_fd = signal.set_wakeup_fd(wakeup_in.fileno(), warn_on_full_buffer=False)
    clean = False
    try:
        if supervisor.start_all(wakeup):
            announce(f"{'gateway':<14} http  http://{host}:{supervisor.port:<9} {count} workers "
                     "(SO_REUSEPORT), REST, SSE, WebSocket, /docs")
            announce("ready; Ctrl-C or SIGTERM stops")
            supervisor.supervise(wakeup)
        log.info("stopping %d gateway workers", len(supervisor.alive()))
    finally:
        clean = supervisor.stop_all()
        signal.set_wakeup_fd(previous_fd)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        wakeup.close()
        wakeup_in.close()
        reserved.close()
        if created_dir:
            os.environ.pop(_MULTIPROC_ENV, None)
            shutil.rmtree(supervisor.metrics_dir, ignore_errors=True)
    return 0 if clean else 1
