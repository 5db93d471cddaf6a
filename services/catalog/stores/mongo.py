"""Catalog on MongoDB: `products` (text index), `reservations` (one document per order id: the
idempotency key), `stock_adjustments` (request ids) and `catalog_outbox`, changed together in
multi-document transactions. Needs a replica set (transactions, change streams)."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone

import pymongo
from bson import ObjectId
from pymongo.errors import DuplicateKeyError, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from services.catalog.domain import (
    Product,
    ProductMissing,
    Reservation,
    ReservationConflict,
    ReservationReleased,
    ReservationState,
    StockChange,
    StockShort,
    VersionMismatch,
    search_words,
    with_stock,
)
from services.kit.bus.outbox import Borrowed
from services.kit.stores.mongo import MongoDatabase
from services.kit.telemetry.metrics import timed_operations
from services.kit.values import Money

log = logging.getLogger("agora.catalog.mongo")


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def to_doc(p: Product) -> dict:
    return {
        "_id": p.id, "seller_id": p.seller_id, "name": p.name, "description": p.description,
        "category": p.category,
        "price": {"currency_code": p.price.currency_code, "amount_minor": p.price.amount_minor},
        "stock": p.stock, "attributes": p.attributes, "version": p.version,
        "created_at": p.created_at, "updated_at": p.updated_at,
    }


def to_product(doc: dict) -> Product:
    price = doc["price"]
    return Product(
        id=doc["_id"], seller_id=doc["seller_id"], name=doc["name"], description=doc.get("description", ""),
        category=doc.get("category", ""), price=Money(price["currency_code"], int(price["amount_minor"])),
        stock=int(doc["stock"]), attributes=doc.get("attributes") or {}, version=int(doc["version"]),
        created_at=_utc(doc["created_at"]), updated_at=_utc(doc["updated_at"]),
    )


def to_reservation(doc: dict) -> Reservation:
    return Reservation(
        order_id=doc["_id"], items=tuple((pid, int(q)) for pid, q in doc["items"]),
        state=ReservationState(doc["state"]), reserved_at=_utc(doc.get("reserved_at")),
        released_at=_utc(doc.get("released_at")), release_reason=doc.get("release_reason", ""),
    )


class MongoOutbox:
    """The kit's OutboxRelay over a MongoDB collection: rows are written in the producer's transaction,
    claimed oldest first and deleted once the bus confirmed them."""

    def __init__(self, collection: str) -> None:
        self.collection = collection

    def add(self, db, session, envelopes) -> None:
        if envelopes:
            db[self.collection].insert_many(
                [{"_id": ObjectId(), "event_id": e.id, "type": e.type, "body": e.SerializeToString()}
                 for e in envelopes],
                session=session,
            )

    def claim(self, conn, limit: int) -> list[tuple[ObjectId, bytes]]:
        docs = conn.client[self.collection].find({}, sort=[("_id", 1)], limit=limit)
        return [(d["_id"], bytes(d["body"])) for d in docs]

    def mark_sent(self, conn, ids) -> None:
        conn.client[self.collection].delete_many({"_id": {"$in": list(ids)}})

    def release(self, conn) -> None:
        pass


@timed_operations
class MongoCatalogStore:
    def __init__(self, url: str, db: str) -> None:
        self.mongo = MongoDatabase(url, db)
        self.db = self.mongo.db
        self.outbox = MongoOutbox("catalog_outbox")
        self._follow_stop = threading.Event()
        self._follow_thread: threading.Thread | None = None

    async def start(self) -> None:
        def create(db) -> None:
            existing = set(db.list_collection_names())
            for name in ("products", "reservations", "stock_adjustments", self.outbox.collection):
                if name not in existing:  # collections must exist before a transaction writes to them
                    try:
                        db.create_collection(name)
                    except pymongo.errors.CollectionInvalid:
                        pass
            db.products.create_index(
                [("name", pymongo.TEXT), ("description", pymongo.TEXT), ("category", pymongo.TEXT)],
                name="text_search", default_language="none",
            )
            db.products.create_index([("seller_id", 1), ("created_at", -1)])
            db.products.create_index([("category", 1), ("created_at", -1)])
            db.products.create_index([("created_at", -1), ("_id", -1)])

        await self.mongo.run(create)

    def _transaction(self, body):
        with self.db.client.start_session() as session:
            return session.with_transaction(
                lambda s: body(s), read_concern=ReadConcern("snapshot"),
                write_concern=WriteConcern("majority"),
            )

    async def _run_tx(self, body):
        return await self.mongo.run(lambda db: self._transaction(body))

    async def create(self, product: Product, event) -> Product:
        def body(s) -> None:
            self.db.products.insert_one(to_doc(product), session=s)
            self.outbox.add(self.db, s, [event])

        await self._run_tx(body)
        return product

    async def get(self, product_id: str) -> Product | None:
        doc = await self.mongo.run(lambda db: db.products.find_one({"_id": product_id}))
        return to_product(doc) if doc else None

    async def replace(self, product: Product, expected_version: int, events) -> None:
        def body(s) -> None:
            doc = to_doc(product)
            doc.pop("_id")
            done = self.db.products.update_one({"_id": product.id, "version": expected_version},
                                               {"$set": doc}, session=s)
            if done.matched_count == 0:
                if self.db.products.count_documents({"_id": product.id}, session=s) == 0:
                    raise ProductMissing(product.id)
                raise VersionMismatch(product.id)
            self.outbox.add(self.db, s, events)

        await self._run_tx(body)

    async def list(self, seller_id: str, category: str, query: str, offset: int, limit: int) -> list[Product]:
        where: dict = {}
        if seller_id:
            where["seller_id"] = seller_id
        if category:
            where["category"] = category
        words = search_words(query)

        def find(db) -> list[dict]:
            if words:
                where["$text"] = {"$search": " ".join(words)}
                cursor = db.products.find(where, {"score": {"$meta": "textScore"}}).sort(
                    [("score", {"$meta": "textScore"}), ("created_at", -1), ("_id", -1)])
            else:
                cursor = db.products.find(where).sort([("created_at", -1), ("_id", -1)])
            return list(cursor.skip(offset).limit(limit))

        return [to_product(d) for d in await self.mongo.run(find)]

    def _change_stock(self, s, product_id: str, delta: int, at) -> StockChange | None:
        """One conditional update: applies only while the result stays >= 0 (None if it would not)."""
        guard = {"_id": product_id} if delta >= 0 else {"_id": product_id, "stock": {"$gte": -delta}}
        before = self.db.products.find_one_and_update(
            guard, {"$inc": {"stock": delta, "version": 1}, "$set": {"updated_at": at}},
            session=s, return_document=pymongo.ReturnDocument.BEFORE,
        )
        if before is None:
            return None
        old = to_product(before)
        return StockChange(old, with_stock(old, delta, at))

    def _missing_or_short(self, s, product_id: str, wanted: int, shortages: dict) -> None:
        doc = self.db.products.find_one({"_id": product_id}, {"stock": 1}, session=s)
        if doc is None:
            raise ProductMissing(product_id)
        shortages[product_id] = (wanted, int(doc["stock"]))

    async def adjust(self, product_id: str, delta: int, request_id: str, reason: str, at,
                     events_for) -> Product:
        def body(s) -> Product:
            # Look before inserting: a failed write would abort the whole transaction.
            if request_id and self.db.stock_adjustments.find_one({"_id": request_id}, session=s) is not None:
                doc = self.db.products.find_one({"_id": product_id}, session=s)
                if doc is None:
                    raise ProductMissing(product_id)
                return to_product(doc)
            if request_id:
                self.db.stock_adjustments.insert_one(
                    {"_id": request_id, "product_id": product_id, "delta": delta, "reason": reason, "at": at},
                    session=s)
            change = self._change_stock(s, product_id, delta, at)
            if change is None:
                shortages: dict = {}
                self._missing_or_short(s, product_id, -delta, shortages)
                raise StockShort(shortages)
            self.outbox.add(self.db, s, events_for([change]))
            return change.after

        try:
            return await self._run_tx(body)
        except DuplicateKeyError:
            return await self._run_tx(body)  # a concurrent repeat of the request committed first

    async def reserve(self, order_id: str, items, at, events_for) -> Reservation:
        def body(s) -> Reservation:
            existing = self.db.reservations.find_one({"_id": order_id}, session=s)
            if existing is not None:
                found = to_reservation(existing)
                if found.state is ReservationState.RELEASED:
                    raise ReservationReleased(order_id)
                if found.items != tuple(items):
                    raise ReservationConflict(order_id)
                return found
            changes, shortages = [], {}
            for product_id, quantity in items:
                change = self._change_stock(s, product_id, -quantity, at)
                if change is None:
                    self._missing_or_short(s, product_id, quantity, shortages)
                else:
                    changes.append(change)
            if shortages:
                raise StockShort(shortages)  # aborts the transaction: nothing was taken
            doc = {"_id": order_id, "items": [list(i) for i in items],
                   "state": ReservationState.RESERVED.value, "reserved_at": at}
            self.db.reservations.insert_one(doc, session=s)
            self.outbox.add(self.db, s, events_for(changes))
            return to_reservation(doc)

        try:
            return await self._run_tx(body)
        except DuplicateKeyError:
            return await self._run_tx(body)  # a concurrent twin committed first: answer what it made

    async def release(self, order_id: str, reason: str, at, events_for) -> Reservation:
        def body(s) -> Reservation:
            existing = self.db.reservations.find_one({"_id": order_id}, session=s)
            if existing is None:
                doc = {"_id": order_id, "items": [], "state": ReservationState.RELEASED.value,
                       "released_at": at, "release_reason": reason}
                self.db.reservations.insert_one(doc, session=s)
                return to_reservation(doc)
            found = to_reservation(existing)
            if found.state is ReservationState.RELEASED:
                return found
            changes = [c for pid, q in found.items if (c := self._change_stock(s, pid, q, at)) is not None]
            self.db.reservations.update_one(
                {"_id": order_id},
                {"$set": {"state": ReservationState.RELEASED.value, "released_at": at,
                          "release_reason": reason}},
                session=s)
            self.outbox.add(self.db, s, events_for(changes))
            existing.update(state=ReservationState.RELEASED.value, released_at=at, release_reason=reason)
            return to_reservation(existing)

        try:
            return await self._run_tx(body)
        except DuplicateKeyError:
            return await self._run_tx(body)

    async def follow(self, on_change) -> None:
        """Tail the products change stream in a thread; every replica sees every replica's changes."""
        loop = asyncio.get_running_loop()
        stop = self._follow_stop

        def tail() -> None:
            while not stop.is_set():
                try:
                    watch = self.db.products.watch(full_document="updateLookup", max_await_time_ms=300)
                    with watch as stream:
                        while not stop.is_set():
                            change = stream.try_next()
                            doc = change and change.get("fullDocument")
                            if doc:
                                loop.call_soon_threadsafe(on_change, to_product(doc))
                except PyMongoError as exc:
                    if not stop.is_set():
                        log.warning("product change stream interrupted (%s); reopening", exc)
                        stop.wait(1.0)
                except RuntimeError:  # the loop closed under us: the process is stopping
                    return

        self._follow_thread = threading.Thread(target=tail, name="catalog-change-stream", daemon=True)
        self._follow_thread.start()

    def relay_connection(self) -> Borrowed:
        return Borrowed(self.db)

    async def ping(self) -> bool:
        return await self.mongo.ping()

    async def close(self) -> None:
        self._follow_stop.set()
        if self._follow_thread is not None:
            await asyncio.to_thread(self._follow_thread.join, 2.0)
        await self.mongo.close()

    async def drop(self) -> None:
        """Drop the database (tests)."""
        await self.mongo.run(lambda db: db.client.drop_database(db.name))
