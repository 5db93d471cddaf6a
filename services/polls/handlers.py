"""The tally consumer: counts `polls.vote.cast` into the live tallies, consolidates closed polls.

Votes arrive one event per handler call; the handler hands its vote to a batch and returns when
the batch is written, so the bus acknowledges only counted votes. A batch is one conditional
write per poll (`TallyStore.commit`): the vote numbers it applies are recorded in the same write,
so a redelivered vote is skipped, never counted twice. When a poll has closed and every vote
accepted before the close is counted, its results are saved as final in the poll store.

    python -m services.polls.handlers      run the consumer alone (scale it apart from the API)

Alone, the process answers grpc.health.v1 on AGORA_GRPC_PORT (0: the polls port + 100, 50152):
`polls.tally` (and "") follows the bus and both stores, `liveness` is SERVING while it runs. It
serves /metrics as `agora serve` does (that port + 10000 unless AGORA_METRICS_PORT says otherwise)
and on SIGTERM stops advertising, lets the batch in flight finish and exits 0; events it had not
acknowledged go back to the group for the other consumers.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from agora.events.v1 import polls_pb2 as events
from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.envelopes import unpack
from services.kit.bus.port import EventBus, Subscription
from services.polls.domain import CountedVote, Tally, TallyChange, now_us, tally_change
from services.polls.store import FinalResults, PollStore, TallyStore

log = logging.getLogger("agora.polls.tally")

GROUP = "polls.tally"
READINESS = "polls.tally"  # the grpc.health.v1 name of the consumer alone (Kubernetes readiness asks for it)
HEALTH_PORT_AFTER_POLLS = 100  # the consumer alone answers health on the polls port + 100 by default
VOTE_CAST, POLL_CLOSED = "polls.vote.cast", "polls.poll.closed"


@dataclass
class _Pending:
    votes: list[CountedVote] = field(default_factory=list)
    closed_total: int | None = None
    waiters: list[asyncio.Future] = field(default_factory=list)


class TallyConsumer:
    """One per process; several processes share the work through the bus group."""

    def __init__(self, polls: PollStore, tallies: TallyStore, *, group: str = GROUP, linger: float = 0.005,
                 max_batch: int = 2000, prefetch: int = 1000) -> None:
        self.polls, self.tallies = polls, tallies
        self.group, self.linger, self.max_batch, self.prefetch = group, linger, max_batch, prefetch
        self._pending: dict[str, _Pending] = {}
        self._size = 0
        self._arrived = asyncio.Event()
        self._known: dict[str, Tally] = {}  # last tally written or read, per poll (saves a read per batch)
        self._task: asyncio.Task | None = None
        self._subscription: Subscription | None = None
        self.counted = 0
        self.batches = 0

    async def start(self, bus: EventBus) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="polls-tally")
        self._subscription = await bus.subscribe(self.group, [VOTE_CAST, POLL_CLOSED], self.handle,
                                                 prefetch=self.prefetch)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
            self._subscription = None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def handle(self, envelope: Envelope) -> None:
        if envelope.type == VOTE_CAST:
            vote = unpack(envelope, events.VoteCast)
            pending = self._pending.setdefault(vote.poll_id, _Pending())
            pending.votes.append(CountedVote(vote.poll_id, vote.poll_vote_number, vote.option,
                                             vote.replaces_previous, vote.previous_option))
        elif envelope.type == POLL_CLOSED:
            closed = unpack(envelope, events.PollClosed)
            pending = self._pending.setdefault(closed.poll_id, _Pending())
            pending.closed_total = closed.accepted_votes
        else:
            return
        done = asyncio.get_running_loop().create_future()
        pending.waiters.append(done)
        self._size += 1
        self._arrived.set()
        await done

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            if self._size < self.max_batch and self.linger:
                await asyncio.sleep(self.linger)  # gather the burst that is arriving
            self._arrived.clear()
            batch, self._pending, self._size = self._pending, {}, 0
            waiters = [w for p in batch.values() for w in p.waiters]
            try:
                await self._apply(batch)
            except Exception as exc:  # noqa: BLE001 - the events fail and the bus retries them
                log.warning("tally batch of %d events failed: %s", len(waiters), exc)
                self._known.clear()
                for w in waiters:
                    if not w.done():
                        w.set_exception(exc)
                continue
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    async def _apply(self, batch: dict[str, _Pending]) -> None:
        todo = dict(batch)
        for _ in range(20):
            missing = [p for p in todo if p not in self._known]
            self._known.update(await self.tallies.load(missing))
            changes: list[TallyChange] = []
            for poll_id, pending in todo.items():
                tally = self._known.get(poll_id) or Tally(poll_id)
                change = tally_change(tally, pending.votes, pending.closed_total)
                if change is not None:
                    changes.append(change)
            refused = await self.tallies.commit(changes)
            for change in changes:
                if change.poll_id in refused:
                    self._known.pop(change.poll_id, None)
                    continue
                before = self._known.get(change.poll_id) or Tally(change.poll_id)
                self._known[change.poll_id] = change.result(before)
                self.counted += change.votes
            self.batches += 1
            todo = {p: todo[p] for p in refused}
            if not todo:
                break
        else:
            raise RuntimeError(f"tallies of {sorted(todo)} kept changing under this consumer")
        await self._consolidate([p for p in batch if p in self._known])
        if len(self._known) > 50_000:
            self._known.clear()

    async def _consolidate(self, poll_ids: list[str]) -> None:
        """Save final results of polls that are closed and fully counted, then mark their tally final."""
        for poll_id in poll_ids:
            tally = self._known[poll_id]
            if not tally.complete or tally.final:
                continue
            saved = await self.polls.save_final(FinalResults(poll_id, dict(tally.counts), tally.version + 1, now_us()))
            if not saved:
                log.warning("poll %s closed but is not in this poll store; left unconsolidated", poll_id)
                continue
            change = tally_change(tally, (), final=True)
            assert change is not None
            if poll_id in await self.tallies.commit([change]):
                self._known.pop(poll_id, None)  # another replica got there first; it marks it final
            else:
                self._known[poll_id] = change.result(tally)


def health_port(settings) -> int:
    """The consumer alone's grpc.health.v1 port: AGORA_GRPC_PORT, else the polls port + 100 (50152)."""
    return settings.grpc_port or settings.port_of("polls") + HEALTH_PORT_AFTER_POLLS


async def main(argv: list[str] | None = None) -> int:
    """Run the tally consumer on its own, against the configured stores and bus, until SIGTERM."""
    import argparse
    import dataclasses
    import signal
    import sys

    import grpc
    from grpc_health.v1 import health_pb2_grpc

    from services.kit import logs
    from services.kit.bus import open_bus
    from services.kit.config import Settings, describe
    from services.kit.health import HealthReporter, bus_probe
    from services.kit.telemetry import tracing
    from services.kit.telemetry.endpoint import MetricsEndpoint
    from services.kit.tls import server_credentials
    from services.polls.store import open_stores

    parser = argparse.ArgumentParser(prog="python -m services.polls.handlers", epilog=describe(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="The polls tally consumer, alone: grpc.health.v1 on "
                                                 "AGORA_GRPC_PORT (0: the polls port + 100), service "
                                                 f"{READINESS!r} for readiness, 'liveness'; /metrics.")
    parser.add_argument("--schema", default="polls", help="PostgreSQL schema of the poll store")
    parser.add_argument("--mongo-db", default=None, help="MongoDB database of the tallies (default AGORA_MONGO_DB)")
    parser.add_argument("--group", default=GROUP, help="consumer group")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not settings.real:
        print("the tally consumer alone needs AGORA_BACKENDS=real: with embedded backends the bus is "
              "in-process and the polls server counts the votes itself", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)

    # health first: a port that cannot be had fails the start before anything is opened
    port = health_port(settings)
    # no SO_REUSEPORT: a second consumer on this machine must not share (and split) the port
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    address, credentials = f"{settings.host}:{port}", server_credentials(settings)

    def listen(address: str) -> int:
        try:
            if credentials is not None:  # TLS only, as the domain servers
                return server.add_secure_port(address, credentials)
            return server.add_insecure_port(address)
        except RuntimeError:  # grpc raises or returns 0, depending on the version
            return 0

    bound = listen(address)
    if bound == 0 and not settings.grpc_port:  # a default port that is taken is no reason not to start
        log.warning("health port %d is taken; answering on a free port instead", port)
        bound = listen(f"{settings.host}:0")
    if bound == 0:
        raise RuntimeError(f"cannot listen on {address} (in use?); set AGORA_GRPC_PORT")
    metrics_port = dataclasses.replace(settings, grpc_port=bound).metrics_port_for("polls")
    scrape = MetricsEndpoint(settings.host, metrics_port, fallback=settings.metrics_port == 0) \
        if metrics_port is not None else None

    tracing.configure(settings.otlp_endpoint, "agora-polls-tally", sample_ratio=settings.trace_sample_ratio)
    polls, tallies = open_stores(settings, schema=args.schema, mongo_db=args.mongo_db)
    bus = open_bus(settings)
    consumer = TallyConsumer(polls, tallies, group=args.group)

    health = HealthReporter([READINESS], {"poll-store": polls.ping, "tally-store": tallies.ping, "bus": bus_probe(bus)},
                            interval=settings.health_interval)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await bus.start()
        await consumer.start(bus)
        await health.start()
        log.info("tally consumer of group %s: grpc.health.v1 on %s:%d, /metrics %s", args.group, settings.host,
                 bound, scrape.url if scrape else "off")
        print("tally consumer ready", flush=True)
        await stop.wait()
    finally:
        await health.shutting_down()
        try:  # the batch in flight is written and acknowledged; what waits behind it goes back to the group
            await asyncio.wait_for(consumer.stop(), settings.shutdown_grace)
        except asyncio.TimeoutError:
            log.warning("the tally consumer did not stop within %.1f s; its unacknowledged events are redelivered",
                        settings.shutdown_grace)
            await consumer.stop()
        await bus.close()
        await polls.close()
        await tallies.close()
        await server.stop(0)
        if scrape is not None:
            scrape.close()
        tracing.uninstall()
        log.info("tally consumer stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
