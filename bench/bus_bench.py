"""Event bus throughput on RabbitMQ: our publish and end-to-end rates against raw confirmed pika, same run.

    .venv/bin/python bench/bus_bench.py [--events 20000] [--repeat 3] [--write]

Baselines, measured on the same broker with the same bodies (serialized envelopes), persistent
messages routed to one durable queue:
  raw-async  pika SelectConnection, asynchronous publisher confirms, every message in flight:
             the honest baseline (the fastest way to publish confirmed with pika)
  raw-sync   pika BlockingConnection with confirm_delivery: one round trip per message (context)
Ours:
  bus publish   RabbitBus.publish(batch of 250) from 8 concurrent tasks, until all are confirmed
  end to end    publish as above while a subscription (prefetch 500) handles every event;
                timed from the first publish to the last handler return (and its ack queued)
`--write` replaces the "## Event bus" section of bench/RESULTS.md with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import statistics
import sys
import time
import uuid
from pathlib import Path

import pika
from google.protobuf.wrappers_pb2 import StringValue

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.kit.bus.envelopes import new_envelope
from services.kit.bus.port import EXCHANGE
from services.kit.bus.rabbitmq import CONTENT_TYPE, PERSISTENT, RabbitBus
from services.kit.config import Settings

SINK = "agora.bench-sink"
SINK_TYPE = "bench.sink.done"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def envelopes(type: str, count: int):
    return [new_envelope(type, "bench", f"k{i % 100}", StringValue(value=f"event {i}")) for i in range(count)]


def admin(url: str, *actions: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.exchange_declare(EXCHANGE, "topic", durable=True)
    if "declare" in actions:
        channel.queue_declare(SINK, durable=True)
        channel.queue_bind(SINK, EXCHANGE, "bench.sink.#")
    if "purge" in actions:
        channel.queue_purge(SINK)
    if "delete" in actions:
        channel.queue_delete(SINK)
    connection.close()


def raw_async(url: str, bodies: list[bytes]) -> float:
    """Every message published at once on a SelectConnection; done when the last confirm arrives."""
    state = {"acked": 0, "start": 0.0, "end": 0.0}

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        def on_confirm(frame):
            method = frame.method
            state["acked"] = method.delivery_tag if method.multiple else state["acked"] + 1
            if state["acked"] >= len(bodies):
                state["end"] = time.perf_counter()
                channel.connection.close()

        def publish_all(_frame):
            state["start"] = time.perf_counter()
            for i, body in enumerate(bodies):
                properties = pika.BasicProperties(delivery_mode=PERSISTENT, content_type=CONTENT_TYPE,
                                                  message_id=str(i))
                channel.basic_publish(EXCHANGE, SINK_TYPE, body, properties)

        channel.confirm_delivery(ack_nack_callback=on_confirm, callback=publish_all)

    connection = pika.SelectConnection(pika.URLParameters(url), on_open_callback=on_open,
                                       on_close_callback=lambda c, r: c.ioloop.stop())
    connection.ioloop.start()
    return len(bodies) / (state["end"] - state["start"])


def raw_sync(url: str, bodies: list[bytes]) -> float:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    start = time.perf_counter()
    for i, body in enumerate(bodies):
        properties = pika.BasicProperties(delivery_mode=PERSISTENT, content_type=CONTENT_TYPE,
                                          message_id=str(i))
        channel.basic_publish(EXCHANGE, SINK_TYPE, body, properties)
    elapsed = time.perf_counter() - start
    connection.close()
    return len(bodies) / elapsed


async def publish_all(bus: RabbitBus, events, batch: int = 250, tasks: int = 8) -> None:
    chunks = [events[i:i + batch] for i in range(0, len(events), batch)]

    async def worker(mine):
        for chunk in mine:
            await bus.publish(chunk)

    await asyncio.gather(*(worker(chunks[t::tasks]) for t in range(tasks)))


async def bus_publish(url: str, events) -> float:
    bus = RabbitBus(url)
    await bus.start()
    start = time.perf_counter()
    await publish_all(bus, events)
    elapsed = time.perf_counter() - start
    await bus.close()
    return len(events) / elapsed


async def end_to_end(url: str, events) -> float:
    bus = RabbitBus(url)
    await bus.start()
    group = f"bench-{uuid.uuid4().hex[:8]}"
    handled = 0
    done = asyncio.Event()

    async def handle(envelope):
        nonlocal handled
        handled += 1
        if handled == len(events):
            done.set()

    await bus.subscribe(group, [f"{events[0].type}"], handle, prefetch=500)
    start = time.perf_counter()
    await publish_all(bus, events)
    await asyncio.wait_for(done.wait(), 300)
    elapsed = time.perf_counter() - start
    await bus.close()
    await bus.delete_group(group)
    return len(events) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--sync-events", type=int, default=2_000, help="raw-sync is slow; fewer messages")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="record the figures in bench/RESULTS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    url = Settings.from_env().amqp_url

    sink_events = envelopes(SINK_TYPE, args.events)
    bodies = [e.SerializeToString() for e in sink_events]
    admin(url, "declare", "purge")
    runs: dict[str, list[float]] = {"raw-async": [], "raw-sync": [], "bus publish": [], "end to end": []}
    try:
        for _ in range(args.repeat):
            runs["raw-async"].append(raw_async(url, bodies))
            admin(url, "purge")
            runs["raw-sync"].append(raw_sync(url, bodies[: args.sync_events]))
            admin(url, "purge")
            runs["bus publish"].append(asyncio.run(bus_publish(url, sink_events)))
            admin(url, "purge")
            e2e_events = envelopes(f"bench.e2e{uuid.uuid4().hex[:6]}.done", args.events)
            runs["end to end"].append(asyncio.run(end_to_end(url, e2e_events)))
    finally:
        admin(url, "delete")

    rate = {name: statistics.median(values) for name, values in runs.items()}
    raw = rate["raw-async"]
    lines = [
        f"| path | events/s (median of {args.repeat}) | runs | vs raw-async |",
        "|---|---:|---|---:|",
    ]
    for name, values in runs.items():
        lines.append(f"| {name} | {rate[name]:,.0f} | {', '.join(f'{v:,.0f}' for v in values)} "
                     f"| {rate[name] / raw:.2f}x |")
    cost = raw / rate["bus publish"]
    summary = [
        (f"- publish cost vs raw confirmed pika (async confirms): {cost:.2f}x (target <= 1.5x: "
        f"{'met' if cost <= 1.5 else 'NOT met'})"),
        (f"- end to end: {rate['end to end']:,.0f} events/s (target >= 10,000: "
        f"{'met' if rate['end to end'] >= 10_000 else 'NOT met'})"),
        (f"- raw-sync (one confirm round trip per message) for context: {rate['raw-sync']:,.0f} events/s; "
        f"bus publish is {rate['bus publish'] / rate['raw-sync']:.1f}x that"),
    ]
    print("\n".join(lines + [""] + summary))
    if args.write:
        write_results(lines, summary, args)
    return 0


def write_results(table: list[str], summary: list[str], args: argparse.Namespace) -> None:
    body = "\n".join([
        "",
        (f"Command: `.venv/bin/python bench/bus_bench.py --events {args.events} --repeat {args.repeat} "
        f"--write` (RabbitMQ 3.10 on the same 2 cores; {time.strftime('%Y-%m-%d')})."),
        "Persistent messages to durable queues, publisher confirms everywhere; bodies are serialized",
        "envelopes (~100 bytes). raw-async is pika's SelectConnection with asynchronous confirms, all",
        "messages in flight: the honest baseline. Bus publish: batches of 250 from 8 tasks on one",
        "loop. End to end: publish while one subscription (prefetch 500, no-op handler) consumes,",
        "timed until the last event is handled.",
        "",
        *table,
        "",
        *summary,
        "",
    ])
    text = RESULTS.read_text()
    pattern = re.compile(r"(## Event bus[^\n]*\n)(.*?)(?=\n## |\Z)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit("bench/RESULTS.md has no '## Event bus' section")
    RESULTS.write_text(pattern.sub(lambda m: m.group(1) + body, text, count=1))


if __name__ == "__main__":
    sys.exit(main())
