"""Blocking drivers stay off the event loop: one slow query does not stall other work."""

from __future__ import annotations

import asyncio

from services.kit.stores.postgres import PostgresDatabase


def _sleep(seconds: float):
    def run(conn):
        with conn.cursor() as cur:
            cur.execute("SELECT pg_sleep(%s)", (seconds,))
    return run


async def test_one_slow_query_does_not_stall_other_queries_or_the_loop(postgres_url):
    db = PostgresDatabase(postgres_url, max_connections=4)
    try:
        slow = asyncio.create_task(db.transaction(_sleep(2.0)))
        await asyncio.sleep(0.1)  # the slow query is running in its worker thread
        ticks = 0

        async def loop_ticks():
            nonlocal ticks
            while not slow.done():
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(loop_ticks())
        for _ in range(20):
            assert await db.ping()
        assert not slow.done(), "twenty quick queries finished while the slow one still ran"
        await slow
        await ticker
        assert ticks > 10, "the event loop kept running while the slow query blocked its thread"
    finally:
        await db.close()
