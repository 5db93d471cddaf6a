"""Tracing overhead: throughput with tracing off vs on, in the same run, against a raw grpc.aio baseline.

    .venv/bin/python bench/telemetry_bench.py [--calls 3000] [--events 5000] [--rounds 3]

Legs, interleaved round by round (the machine is shared; medians of the rounds):
  raw grpc.aio     a bare server, no interceptors, bytes in and out: the baseline
  kit, off         the same handler on the kit's DomainServer (request id, access log, metrics, errors)
                   called through the kit's client interceptor (DeadlinePropagation), tracing off
  kit, on          the same with an SDK tracer provider installed (BatchSpanProcessor, an exporter
                   that drops the batches): a CLIENT and a SERVER span per call, traceparent in metadata
  bus, off / on    new_envelope + InProcessBus.publish + a consumer, events/s: on adds a PRODUCER span
                   and headers per event, and a CONSUMER span per delivery
  ..., 10% sampled on, with AGORA_TRACE_SAMPLE_RATIO=0.1's sampler: 9 in 10 traces are not recorded
Calls run 16 at a time from this process, against servers in this process (one loop).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

import grpc
from google.protobuf.wrappers_pb2 import StringValue
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.kit.bus.envelopes import new_envelope
from services.kit.bus.inprocess import InProcessBus
from services.kit.interceptors import DeadlinePropagation
from services.kit.registry import Domain
from services.kit.server import DomainServer, ServiceSpec
from services.kit.telemetry import tracing

DOMAIN = Domain("bench", "agora.bench.v1.BenchService", 0)
METHOD = f"/{DOMAIN.service}/Echo"
CONCURRENCY = 16


class DroppingExporter(SpanExporter):
    """What an OTLP exporter costs the process minus the network: batches handed over and dropped."""

    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans):
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass


async def echo(request: bytes, context) -> bytes:
    return request


def _generic():
    return grpc.method_handlers_generic_handler(DOMAIN.service,
                                                {"Echo": grpc.unary_unary_rpc_method_handler(echo)})


async def calls_per_second(target: str, calls: int, interceptors) -> float:
    async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
        call = channel.unary_unary(METHOD)
        await call(b"warm", timeout=5)
        left = calls

        async def worker():
            nonlocal left
            while left > 0:
                left -= 1
                await call(b"x" * 64, timeout=5)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return calls / (time.perf_counter() - started)


async def events_per_second(events: int) -> float:
    bus = InProcessBus()
    await bus.start()
    done = asyncio.Event()
    seen = 0

    async def handler(envelope) -> None:
        nonlocal seen
        seen += 1
        if seen == events:
            done.set()

    await bus.subscribe("bench", ["bench.#"], handler, prefetch=256)
    started = time.perf_counter()
    for start in range(0, events, 250):
        await bus.publish([new_envelope("bench.thing.done", "bench", f"k{i % 64}", StringValue(value="e"))
                           for i in range(start, min(start + 250, events))])
    await asyncio.wait_for(done.wait(), 120)
    rate = events / (time.perf_counter() - started)
    await bus.close()
    return rate


def tracing_on(ratio: float = 1.0) -> tuple[TracerProvider, DroppingExporter]:
    exporter = DroppingExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(ratio)))
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=65536, schedule_delay_millis=200))
    tracing.install(provider)
    return provider, exporter


def tracing_off(provider: TracerProvider) -> None:
    tracing.uninstall()
    provider.shutdown()


async def main(args) -> None:
    logging.getLogger().setLevel(logging.WARNING)  # the access log at INFO would dominate every leg
    raw = grpc.aio.server()
    raw.add_generic_rpc_handlers((_generic(),))
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    await raw.start()
    kit = DomainServer(ServiceSpec(DOMAIN, register=lambda s: s.add_generic_rpc_handlers((_generic(),))),
                       host="127.0.0.1", port=0, grace=1.0)
    await kit.start()
    legs: dict[str, list[float]] = {k: [] for k in ("raw", "off", "on", "sampled", "bus off", "bus on",
                                                    "bus sampled")}
    exported = 0
    for _ in range(args.rounds):
        legs["raw"].append(await calls_per_second(f"127.0.0.1:{raw_port}", args.calls, None))
        legs["off"].append(await calls_per_second(kit.address, args.calls, [DeadlinePropagation()]))
        provider, exporter = tracing_on()
        legs["on"].append(await calls_per_second(kit.address, args.calls, [DeadlinePropagation()]))
        legs["bus on"].append(await events_per_second(args.events))
        tracing_off(provider)
        exported += exporter.spans
        provider, _ = tracing_on(0.1)
        legs["sampled"].append(await calls_per_second(kit.address, args.calls, [DeadlinePropagation()]))
        legs["bus sampled"].append(await events_per_second(args.events))
        tracing_off(provider)
        legs["bus off"].append(await events_per_second(args.events))
    await kit.stop()
    await raw.stop(None)
    med = {k: statistics.median(v) for k, v in legs.items()}
    print(f"rounds={args.rounds} calls/leg={args.calls} events/leg={args.events} concurrency={CONCURRENCY} "
          f"spans exported while on={exported:,}")
    print("| leg | per second (median) | vs raw gRPC | vs tracing off | runs |")
    print("|---|---:|---:|---:|---|")
    for key, label, unit in (("raw", "raw grpc.aio unary", "calls"),
                             ("off", "kit unary, tracing off", "calls"),
                             ("on", "kit unary, tracing on", "calls"),
                             ("sampled", "kit unary, tracing on, 10% sampled", "calls")):
        print(f"| {label} | {med[key]:,.0f} {unit} | {med[key] / med['raw']:.2f}x | "
              f"{med[key] / med['off']:.2f}x | {', '.join(f'{v:,.0f}' for v in legs[key])} |")
    for key, label in (("bus off", "bus publish+consume, tracing off"),
                       ("bus on", "bus publish+consume, tracing on"),
                       ("bus sampled", "bus publish+consume, tracing on, 10% sampled")):
        print(f"| {label} | {med[key]:,.0f} events | | {med[key] / med['bus off']:.2f}x | "
              f"{', '.join(f'{v:,.0f}' for v in legs[key])} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
