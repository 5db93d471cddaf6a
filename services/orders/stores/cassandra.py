"""Orders on Cassandra, one table per query (CQL valid on 2.1 with protocol v3 and on 4.x/5.x):

- orders_by_id: one partition per order; the order's fields are static columns, each status
  history entry is a clustering row (sequence) — GetOrder, WatchOrder replay: one partition read.
- orders_by_client: (client_id) -> (created_at DESC, order_id) — ListOrdersByClient, newest first.
- orders_outbox: (hour bucket) -> (timeuuid) — events written in the same logged batch as a new
  order, relayed by the kit's outbox relay and deleted once the broker confirmed them.
- orders_by_due: (day of payment_due_at) -> (payment_due_at, order_id) — the payment-timeout sweeper.

Status changes are compare-and-set: a lightweight transaction (`IF status = ?`, Cassandra 2.1+)
over the order's own partition (status + the new history row). A conditional batch cannot span
partitions, so the change's event goes to the outbox right after it is applied; the event id is
derived from (order, sequence), so a writer interrupted in between re-emits the same event when
the change's cause is redelivered (see OrderLedger.change), and consumers dedupe by id.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import namedtuple
from datetime import datetime, timedelta, timezone

from cassandra.query import BatchStatement, BatchType
from cassandra.util import uuid_from_time

from services.kit.bus.outbox import Borrowed
from services.kit.config import Settings
from services.kit.stores.cassandra import CassandraAdapter, CassandraDatabase
from services.kit.telemetry.metrics import timed_operations
from services.kit.values import Money
from services.orders.domain import Line, Order, Status, StatusChange

OrderLine = namedtuple("OrderLine",
                       "product_id quantity currency_code unit_price_minor product_name seller_id")

SCHEMA = [
    ("CREATE TYPE IF NOT EXISTS order_line (product_id text, quantity bigint, currency_code text,"
    " unit_price_minor bigint, product_name text, seller_id text)"),
    ("CREATE TABLE IF NOT EXISTS orders_by_id (order_id text, sequence int,"
    " client_id text static, user_id text static, items list<frozen<order_line>> static, status int static,"
    " payment_id text static, payment_due_at timestamp static, created_at timestamp static,"
    " updated_at timestamp static,"
    " change_status int, change_at timestamp, change_reason text, change_event_id text,"
    " PRIMARY KEY (order_id, sequence))"),
    ("CREATE TABLE IF NOT EXISTS orders_by_client (client_id text, created_at timestamp, order_id text,"
    " PRIMARY KEY (client_id, created_at, order_id))"
    " WITH CLUSTERING ORDER BY (created_at DESC, order_id ASC)"),
    ("CREATE TABLE IF NOT EXISTS orders_outbox (bucket text, id timeuuid, body blob,"
     " PRIMARY KEY (bucket, id))"),
    ("CREATE TABLE IF NOT EXISTS orders_by_due (bucket text, payment_due_at timestamp, order_id text,"
     " PRIMARY KEY (bucket, payment_due_at, order_id))"),
]
TABLES = ("orders_by_id", "orders_by_client", "orders_outbox", "orders_by_due")
DUE_LOOKBACK_DAYS = 7  # the payment-timeout sweeper looks this far back for orders still PENDING


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _bucket(at: datetime) -> str:
    return at.strftime("%Y%m%d%H")


def _day(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y%m%d")


def _encode(paging_state: bytes | None) -> str:
    return base64.urlsafe_b64encode(paging_state).decode() if paging_state else ""


def _decode(cursor: str) -> bytes | None:
    return base64.urlsafe_b64decode(cursor) if cursor else None


def to_order(rows) -> Order | None:
    rows = list(rows)
    if not rows:
        return None
    first = rows[0]
    items = tuple(Line(i.product_id, i.quantity, Money(i.currency_code, i.unit_price_minor), i.product_name,
                       i.seller_id) for i in (first.items or ()))
    history = tuple(StatusChange(r.sequence, Status(r.change_status), _utc(r.change_at),
                                 r.change_reason or "", r.change_event_id or "")
                    for r in rows if r.sequence is not None)
    return Order(id=first.order_id, client_id=first.client_id, items=items, status=Status(first.status),
                 history=history, created_at=_utc(first.created_at), updated_at=_utc(first.updated_at),
                 payment_due_at=_utc(first.payment_due_at), user_id=first.user_id or "",
                 payment_id=first.payment_id or "")


class CassandraOutbox:
    """The kit's OutboxRelay over a Cassandra table bucketed by hour. The relay keeps a cursor on the
    oldest bucket that may hold rows (from `lookback` ago at start) so it never rereads deleted rows.
    Producers `add` to their batch; the relay's calls get a `Borrowed` (the shared session)."""

    def __init__(self, table: str, *, lookback: timedelta = timedelta(hours=48)) -> None:
        self.table = table
        self.lookback = lookback
        self._oldest: datetime | None = None

    def add(self, batch: BatchStatement, session, envelopes) -> None:
        insert = session.prepare(f"INSERT INTO {self.table} (bucket, id, body) VALUES (?, ?, ?)")
        for e in envelopes:
            at = datetime.now(timezone.utc)
            batch.add(insert, (_bucket(at), uuid_from_time(at), e.SerializeToString()))

    def claim(self, conn: Borrowed, limit: int) -> list[tuple[tuple[str, uuid.UUID], bytes]]:
        session = conn.client
        now = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        if self._oldest is None:
            self._oldest = now - self.lookback
        select = session.prepare(f"SELECT id, body FROM {self.table} WHERE bucket = ? LIMIT ?")
        hour, out = self._oldest, []
        while hour <= now and len(out) < limit:
            rows = list(session.execute(select, (_bucket(hour), limit - len(out))))
            out += [((_bucket(hour), r.id), bytes(r.body)) for r in rows]
            if not rows and hour < now and hour == self._oldest:
                self._oldest = hour + timedelta(hours=1)  # an empty past hour stays empty
            hour += timedelta(hours=1)
        return out

    def mark_sent(self, conn: Borrowed, keys) -> None:
        delete = conn.client.prepare(f"DELETE FROM {self.table} WHERE bucket = ? AND id = ?")
        futures = [conn.client.execute_async(delete, key) for key in keys]
        for f in futures:
            f.result()

    def release(self, conn: Borrowed) -> None:
        pass


@timed_operations
class CassandraOrderStore(CassandraAdapter):
    def __init__(self, settings: Settings) -> None:
        self.db = CassandraDatabase(settings)
        self.outbox = CassandraOutbox("orders_outbox")
        self._session = None

    async def start(self) -> None:
        self._session = await self._create_tables(SCHEMA)

    def _prepare(self, session) -> None:
        self._insert_order = session.prepare(
            "INSERT INTO orders_by_id (order_id, sequence, client_id, user_id, items, status, payment_id,"
            " payment_due_at, created_at, updated_at, change_status, change_at, change_reason,"
            " change_event_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        self._insert_by_client = session.prepare(
            "INSERT INTO orders_by_client (client_id, created_at, order_id) VALUES (?, ?, ?)")
        self._update_status = session.prepare(
            "UPDATE orders_by_id SET status = ?, payment_id = ?, updated_at = ? WHERE order_id = ?")
        self._insert_change = session.prepare(
            "INSERT INTO orders_by_id (order_id, sequence, change_status, change_at, change_reason,"
            " change_event_id)"
            " VALUES (?, ?, ?, ?, ?, ?)")
        self._select_order = session.prepare("SELECT * FROM orders_by_id WHERE order_id = ?")
        self._select_by_client = session.prepare(
            "SELECT order_id FROM orders_by_client WHERE client_id = ?")
        self._select_ids = session.prepare("SELECT DISTINCT order_id, status FROM orders_by_id")
        self._update_status_if = session.prepare(
            "UPDATE orders_by_id SET status = ?, payment_id = ?, updated_at = ? WHERE order_id = ?"
            " IF status = ?")
        self._insert_due = session.prepare(
            "INSERT INTO orders_by_due (bucket, payment_due_at, order_id) VALUES (?, ?, ?)")
        self._select_due = session.prepare(
            "SELECT payment_due_at, order_id FROM orders_by_due WHERE bucket = ? AND payment_due_at <= ?"
            " LIMIT ?")
        self._delete_due = session.prepare(
            "DELETE FROM orders_by_due WHERE bucket = ? AND payment_due_at = ? AND order_id = ?")
        self._attach_payment = session.prepare("UPDATE orders_by_id SET payment_id = ? WHERE order_id = ?")

    async def create(self, order: Order, event) -> None:
        session = self._session
        first = order.history[0]
        items = [OrderLine(i.product_id, i.quantity, i.unit_price.currency_code, i.unit_price.amount_minor,
                           i.product_name, i.seller_id) for i in order.items]

        def write() -> None:
            batch = BatchStatement(batch_type=BatchType.LOGGED)
            batch.add(self._insert_order, (
                order.id, first.sequence, order.client_id, order.user_id, items, int(order.status),
                order.payment_id, order.payment_due_at, order.created_at, order.updated_at, int(first.status),
                first.at, first.reason, first.event_id))
            batch.add(self._insert_by_client, (order.client_id, order.created_at, order.id))
            batch.add(self._insert_due, (_day(order.payment_due_at), order.payment_due_at, order.id))
            self.outbox.add(batch, session, [event])
            session.execute(batch, timeout=10)

        await asyncio.to_thread(write)

    def _get(self, order_id: str) -> Order | None:
        return to_order(self._session.execute(self._select_order, (order_id,), timeout=10))

    def _get_many(self, ids: list[str]) -> list[Order]:
        futures = [self._session.execute_async(self._select_order, (i,), timeout=10) for i in ids]
        return [o for f in futures if (o := to_order(f.result())) is not None]

    async def get(self, order_id: str) -> Order | None:
        return await asyncio.to_thread(self._get, order_id)

    def _page(self, prepared, params, cursor: str, limit: int):
        statement = prepared.bind(params)
        statement.fetch_size = limit
        result = self._session.execute(statement, paging_state=_decode(cursor), timeout=10)
        return list(result.current_rows), _encode(result.paging_state)

    async def list_by_client(self, client_id: str, cursor: str, limit: int) -> tuple[list[Order], str]:
        def read():
            rows, after = self._page(self._select_by_client, (client_id,), cursor, limit)
            return self._get_many([r.order_id for r in rows]), after

        return await asyncio.to_thread(read)

    async def list_all(self, status: Status | None, cursor: str, limit: int) -> tuple[list[Order], str]:
        def read():
            rows, after = self._page(self._select_ids, (), cursor, limit)
            ids = [r.order_id for r in rows if status is None or r.status == int(status)]
            return self._get_many(ids), after

        return await asyncio.to_thread(read)

    async def transition(self, order: Order, event, *, expect: Status | None = None) -> bool:
        session = self._session
        change = order.history[-1]
        history_row = (order.id, change.sequence, int(change.status), change.at, change.reason,
                       change.event_id)

        def write() -> bool:
            if expect is None:
                batch = BatchStatement(batch_type=BatchType.LOGGED)
                batch.add(self._update_status,
                          (int(order.status), order.payment_id, order.updated_at, order.id))
                batch.add(self._insert_change, history_row)
                if event is not None:
                    self.outbox.add(batch, session, [event])
                session.execute(batch, timeout=10)
                return True
            # One partition: the status (static) and the new history row, applied only if the status
            # is still what the caller read.
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            batch.add(self._update_status_if,
                      (int(order.status), order.payment_id, order.updated_at, order.id, int(expect)))
            batch.add(self._insert_change, history_row)
            if not session.execute(batch, timeout=10).was_applied:
                return False
            if event is not None:
                self._emit(event)
            return True

        return await asyncio.to_thread(write)

    def _emit(self, event) -> None:
        batch = BatchStatement(batch_type=BatchType.UNLOGGED)
        self.outbox.add(batch, self._session, [event])
        self._session.execute(batch, timeout=10)

    async def emit(self, event) -> None:
        await asyncio.to_thread(self._emit, event)

    async def attach_payment(self, order_id: str, payment_id: str) -> None:
        await asyncio.to_thread(self._session.execute, self._attach_payment, (payment_id, order_id),
                                timeout=10)

    async def pending_due(self, at: datetime, limit: int) -> list[Order]:
        def read() -> list[Order]:
            found: list[Order] = []
            day = at - timedelta(days=DUE_LOOKBACK_DAYS)
            while day.date() <= at.date() and len(found) < limit:
                bucket = _day(day)
                for row in self._session.execute(self._select_due, (bucket, at, limit), timeout=10):
                    order = self._get(row.order_id)
                    if order is not None and order.status is Status.PENDING:
                        found.append(order)
                    else:  # no longer waiting for its payment: the sweeper can forget it
                        self._session.execute(self._delete_due, (bucket, row.payment_due_at, row.order_id))
                day += timedelta(days=1)
            return found[:limit]

        return await asyncio.to_thread(read)

    def relay_connection(self) -> Borrowed:
        return Borrowed(self._session)

    async def truncate(self) -> None:
        """Empty every table (tests: the schema is made once per session)."""
        await self._truncate(TABLES)
