"""Live tallies on MongoDB: one document per poll, changed by one conditional `$inc` per poll per batch.

    {_id: poll_id, counts: {"0": n, ...}, applied: [[lo, hi], ...], version: v,
     closed_total: N | null, final: bool}

A change carries the version it was computed from; the filter `{_id, version}` with upsert makes
a stale change fail with a duplicate-key error instead of counting twice. `changes()` follows the
collection's change stream, so every replica's watchers see every replica's tally writes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pymongo
from pymongo.errors import BulkWriteError, PyMongoError

from services.kit.stores.mongo import MongoDatabase
from services.kit.telemetry.metrics import timed_operations
from services.polls.domain import Tally, TallyChange

log = logging.getLogger("agora.polls.tally")

COLLECTION = "poll_tallies"
DUPLICATE_KEY = 11000


def _tally(doc: dict[str, Any]) -> Tally:
    return Tally(
        doc["_id"], {int(k): v for k, v in (doc.get("counts") or {}).items()},
        tuple((lo, hi) for lo, hi in doc.get("applied") or ()), doc.get("version", 0),
        doc.get("closed_total"), bool(doc.get("final", False)),
    )


def _update(change: TallyChange) -> pymongo.UpdateOne:
    update: dict[str, Any] = {
        "$inc": {"version": 1, **{f"counts.{option}": d for option, d in change.deltas.items()}},
        "$set": {"applied": [list(r) for r in change.applied], "closed_total": change.closed_total,
                 "final": change.final},
    }
    return pymongo.UpdateOne({"_id": change.poll_id, "version": change.base}, update, upsert=True)


@timed_operations
class MongoTallyStore:
    def __init__(self, url: str, db: str) -> None:
        self.url, self.db_name = url, db
        self.db = MongoDatabase(url, db)
        self.collection = self.db.db[COLLECTION]

    async def start(self) -> None:
        """Nothing to create: documents appear with their first write."""

    async def load(self, poll_ids: Sequence[str]) -> dict[str, Tally]:
        if not poll_ids:
            return {}
        docs = await self.db.run(lambda db: list(db[COLLECTION].find({"_id": {"$in": list(poll_ids)}})))
        return {d["_id"]: _tally(d) for d in docs}

    async def commit(self, changes: Sequence[TallyChange]) -> set[str]:
        if not changes:
            return set()

        def write(db: Any) -> set[str]:
            try:
                db[COLLECTION].bulk_write([_update(c) for c in changes], ordered=False)
                return set()
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                # Version moved under us (another writer): upsert tried to make a second document.
                return {changes[e["index"]].poll_id for e in errors}

        return await self.db.run(write)

    async def changes(self) -> AsyncIterator[Tally]:
        """Every tally document written, by anyone, via the change stream (a thread of its own)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Tally] = asyncio.Queue(maxsize=10_000)
        stop = threading.Event()

        def offer(tally: Tally) -> None:
            if queue.full():
                queue.get_nowait()  # latest wins: drop the oldest change
            queue.put_nowait(tally)

        def follow() -> None:
            token = None
            while not stop.is_set():
                try:
                    with self.collection.watch(full_document="updateLookup", resume_after=token,
                                               max_await_time_ms=200) as stream:
                        while not stop.is_set():
                            event = stream.try_next()
                            if event is None:
                                continue
                            token = stream.resume_token
                            doc = event.get("fullDocument")
                            if doc is not None:
                                loop.call_soon_threadsafe(offer, _tally(doc))
                except PyMongoError as exc:
                    if stop.is_set():
                        return
                    log.warning("tally change stream interrupted (%s); reopening", exc)
                    token = None if "resume" in str(exc).lower() else token
                    stop.wait(0.5)
                except RuntimeError:  # the loop closed under us (shutdown)
                    return

        thread = threading.Thread(target=follow, name="polls-tally-changes", daemon=True)
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            stop.set()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        """Remove the whole database (tests)."""
        await self.db.run(lambda db: db.client.drop_database(db.name))
