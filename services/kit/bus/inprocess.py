"""The in-process bus: the embedded default and the fast tests' bus, with the RabbitMQ adapter's semantics.

Per consumer group, a queue that outlives its subscriptions (events published while a group has
no subscriber wait for it), per-key order, retries with a growing delay, dead letters and replay.
Nothing survives the process: the embedded mode accepts that, production runs on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.envelopes import topic_matches
from services.kit.bus.lanes import KeyedLanes
from services.kit.bus.port import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PREFETCH,
    DEFAULT_RETRY_DELAY,
    DeadLetter,
    Handler,
    retry_delays,
)
from services.kit.telemetry import messaging, metrics

log = logging.getLogger("agora.bus")


@dataclass
class _Delivery:
    envelope: Envelope
    attempt: int = 1


@dataclass
class _Group:
    name: str
    patterns: tuple[str, ...] = ()
    handler: Handler | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    delays: list[float] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None
    lanes: KeyedLanes | None = None
    waiting: deque[_Delivery] = field(default_factory=deque)  # published while nobody subscribed
    dead: list[tuple[DeadLetter, Envelope]] = field(default_factory=list)

    def wants(self, type: str) -> bool:
        return any(topic_matches(p, type) for p in self.patterns)


class InProcessSubscription:
    def __init__(self, bus: InProcessBus, group: _Group) -> None:
        self._bus, self._group = bus, group

    async def cancel(self) -> None:
        await self._bus._unsubscribe(self._group)


class InProcessBus:
    """EventBus within one process. `publish` copies envelopes, as a broker would.

    Its dead letters live in its memory, so it is its own DeadLetterAdmin (services.kit.bus.admin)."""

    def __init__(self) -> None:
        self._groups: dict[str, _Group] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._open = False

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        for group in list(self._groups.values()):
            await self._unsubscribe(group)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._open = False

    def healthy(self) -> bool:
        return self._open

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if not self._open:
            raise RuntimeError("the bus is closed")
        for envelope in envelopes:
            body = envelope.SerializeToString()
            for group in self._groups.values():
                if group.wants(envelope.type):
                    self._deliver(group, _Delivery(Envelope.FromString(body)))
            metrics.bus_published(envelope.type).inc()

    async def subscribe(
        self,
        group: str,
        patterns: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delay: float = DEFAULT_RETRY_DELAY,
        ephemeral: bool = False,
    ) -> InProcessSubscription:
        # One process is one replica: an ephemeral group behaves like any other, minus retries.
        if ephemeral:
            max_attempts = 1
        state = self._groups.setdefault(group, _Group(group))
        if state.handler is not None:
            raise ValueError(f"group {group!r} already has a subscriber in this process")
        # Bindings accumulate like a durable queue's: a group never forgets a pattern it was given.
        state.patterns = tuple(dict.fromkeys(state.patterns + tuple(patterns)))
        state.handler = handler
        state.max_attempts = max(1, max_attempts)
        state.delays = retry_delays(state.max_attempts, retry_delay)
        state.slots = asyncio.Semaphore(max(1, prefetch))
        state.lanes = KeyedLanes(lambda d, g=state: self._handle(g, d))
        while state.waiting:
            self._deliver(state, state.waiting.popleft())
        return InProcessSubscription(self, state)

    async def _unsubscribe(self, group: _Group) -> None:
        lanes, group.lanes, group.handler = group.lanes, None, None
        if lanes is not None:
            await lanes.wait_idle(timeout=5.0)
            group.waiting.extendleft(reversed(await lanes.stop()))

    def _deliver(self, group: _Group, delivery: _Delivery) -> None:
        metrics.bus_pending(group.name).inc()
        if group.lanes is None:
            group.waiting.append(delivery)
        else:
            group.lanes.put(delivery.envelope.key, delivery)

    async def _handle(self, group: _Group, delivery: _Delivery) -> None:
        assert group.slots is not None and group.handler is not None
        async with group.slots:
            try:
                await messaging.consume(group.name, delivery.envelope, group.handler, delivery.attempt)
                metrics.bus_pending(group.name).dec()
                return
            except Exception as exc:  # noqa: BLE001 - the handler's failure is the event's, not the bus's
                error = f"{type(exc).__name__}: {exc}"
            # (a cancelled delivery goes back to the group's queue: still pending)
            metrics.bus_pending(group.name).dec()
        envelope = delivery.envelope
        if delivery.attempt < group.max_attempts:
            metrics.bus_retries(group.name, envelope.type).inc()
            delay = group.delays[delivery.attempt - 1]
            log.warning("event %s (%s) failed in %s, attempt %d, retry in %.2fs: %s",
                        envelope.id, envelope.type, group.name, delivery.attempt, delay, error)
            again = _Delivery(envelope, delivery.attempt + 1)
            timer: asyncio.TimerHandle

            def retry() -> None:
                self._timers.discard(timer)
                self._deliver(group, again)

            timer = asyncio.get_running_loop().call_later(delay, retry)
            self._timers.add(timer)
            return
        log.error("event %s (%s) dead-lettered by %s after %d attempts: %s",
                  envelope.id, envelope.type, group.name, delivery.attempt, error)
        letter = DeadLetter(envelope.id, group.name, envelope.type, envelope.key, delivery.attempt,
                            error, envelope)
        metrics.bus_dead_letters(group.name, envelope.type).inc()
        group.dead.append((letter, envelope))

    def _chosen(self, group: str | None, ids: Collection[str] | None):
        for state in self._groups.values():
            if group is not None and state.name != group:
                continue
            for entry in state.dead:
                if ids is None or entry[0].id in ids:
                    yield state, entry

    async def dead_letters(self, group: str | None = None, *, limit: int = 1000) -> list[DeadLetter]:
        return [letter for _, (letter, _) in self._chosen(group, None)][:limit]

    async def replay_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        chosen = list(self._chosen(group, ids))
        for state, entry in chosen:
            state.dead.remove(entry)
            self._deliver(state, _Delivery(entry[1]))
        return len(chosen)

    async def discard_dead_letters(self, group: str | None = None, ids: Collection[str] | None = None) -> int:
        chosen = list(self._chosen(group, ids))
        for state, entry in chosen:
            state.dead.remove(entry)
        return len(chosen)
