"""The tally consumer alone: `python -m services.polls.handlers` (the deployments' polls-tally).

Only the standalone process lives here (its command is what deployments/ and the README run, so the
module keeps its name); the consumer itself is consumers.TallyConsumer, the one the polls server
runs in process (ServiceSpec.consumers) unless AGORA_POLLS_TALLY_IN_PROCESS=false.

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

from services.polls.consumers import GROUP, TallyConsumer

log = logging.getLogger("agora.polls.tally")

READINESS = "polls.tally"  # the consumer alone's grpc.health.v1 name (Kubernetes readiness asks for it)
HEALTH_PORT_AFTER_POLLS = 100  # the consumer alone answers health on the polls port + 100 by default


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
    parser.add_argument("--mongo-db", default=None,
                        help="MongoDB database of the tallies (default AGORA_MONGO_DB)")
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

    probes = {"poll-store": polls.ping, "tally-store": tallies.ping, "bus": bus_probe(bus)}
    health = HealthReporter([READINESS], probes, interval=settings.health_interval)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await bus.start()
        await consumer.subscribe(bus)  # returns itself: consumer.cancel() below ends it
        await health.start()
        log.info("tally consumer of group %s: grpc.health.v1 on %s:%d, /metrics %s", args.group,
                 settings.host, bound, scrape.url if scrape else "off")
        print("tally consumer ready", flush=True)
        await stop.wait()
    finally:
        await health.shutting_down()
        try:  # the batch in flight is written and acknowledged; what waits behind it goes back to the group
            await asyncio.wait_for(consumer.cancel(), settings.shutdown_grace)
        except asyncio.TimeoutError:
            log.warning("the tally consumer did not stop within %.1f s; its unacknowledged events are "
                        "redelivered", settings.shutdown_grace)
            await consumer.cancel()
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
