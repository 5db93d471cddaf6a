"""A consumer process for the kill test: applies every event to a SQLite store with an inbox.

    python -m tests.services.kit.bus.consumer_proc AMQP_URL GROUP PATTERN DB_PATH
Prints `ready` once consuming; runs until killed.
"""

from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.kit.bus.rabbitmq import RabbitBus
from tests.services.kit.bus.support import EffectStore


async def main(url: str, group: str, pattern: str, db: str) -> None:
    # Slow enough per event that a kill lands mid-stream, with effects committed but not yet acked.
    store = EffectStore(Path(db), group, apply_delay=0.0003)
    writer = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()

    async def handle(envelope):
        await loop.run_in_executor(writer, store.apply, envelope)

    bus = RabbitBus(url)
    await bus.start()
    await bus.subscribe(group, [pattern], handle, prefetch=200)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
