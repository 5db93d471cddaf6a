"""MongoDB through pymongo, its blocking calls run in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pymongo
import pymongo.database

from services.kit.telemetry.metrics import store_operation, timed_store_call

T = TypeVar("T")


class MongoDatabase:
    def __init__(self, url: str, db: str, *, workers: int = 8, timeout_ms: int = 3000) -> None:
        self.client = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, maxPoolSize=workers * 2
        )
        self.db: pymongo.database.Database = self.client[db]
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mongo")

    async def run(self, fn: Callable[[pymongo.database.Database], T], *, operation: str | None = None) -> T:
        """fn(db) in a worker thread (in a copy of the caller's context), timed as `operation`
        (default: the store method that called) in agora_store_duration_seconds."""
        context = contextvars.copy_context()
        call = asyncio.get_running_loop().run_in_executor(self._executor, context.run, fn, self.db)
        return await timed_store_call("mongo", operation or store_operation(), call)

    async def ping(self) -> bool:
        return await self.run(lambda db: db.client.admin.command("ping").get("ok") == 1, operation="ping")

    async def close(self) -> None:
        self.client.close()
        self._executor.shutdown(wait=False)
