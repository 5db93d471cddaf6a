"""The auctions SQL both adapters share (portable SQL; times as integer microseconds since the epoch).

Each adapter supplies `_transaction(fn)` (run fn(conn) in one transaction off the event loop) and
`_execute(conn, sql, args)` (returns a DB-API cursor); SQL here is written with %s placeholders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from agora.events.v1.envelope_pb2 import Envelope

from services.auctions.domain import CLOSED, OPEN, Auction, Bid
from services.auctions.store import CloseEvents, Decide, PlacedBid, PlanEvents
from services.kit.errors import NotFound
from services.kit.stores.sql import SqlDialect
from services.kit.telemetry.metrics import timed_operations

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS auctions (
        id TEXT PRIMARY KEY,
        seller_id TEXT NOT NULL,
        seller_name TEXT NOT NULL,
        product_name TEXT NOT NULL,
        description TEXT NOT NULL,
        currency TEXT NOT NULL,
        starting_price BIGINT NOT NULL,
        min_increment BIGINT NOT NULL,
        auction_end_us BIGINT NOT NULL,
        ends_at_us BIGINT NOT NULL,
        window_us BIGINT NOT NULL,
        extension_us BIGINT NOT NULL,
        status SMALLINT NOT NULL,
        bid_count BIGINT NOT NULL DEFAULT 0,
        created_us BIGINT NOT NULL,
        closed_us BIGINT
    )""",
    "CREATE INDEX IF NOT EXISTS auctions_by_status_end ON auctions (status, ends_at_us)",
    "CREATE INDEX IF NOT EXISTS auctions_by_seller ON auctions (seller_id)",
    """CREATE TABLE IF NOT EXISTS bids (
        auction_id TEXT NOT NULL REFERENCES auctions(id),
        sequence BIGINT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        bidder_id TEXT NOT NULL,
        bidder_name TEXT NOT NULL,
        amount BIGINT NOT NULL,
        placed_us BIGINT NOT NULL,
        ends_at_us BIGINT NOT NULL,
        extended BOOLEAN NOT NULL,
        request_id TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (auction_id, sequence)
    )""",
    ("CREATE UNIQUE INDEX IF NOT EXISTS bids_by_request ON bids (auction_id, bidder_id, request_id)"
    " WHERE request_id <> ''"),
]

_BID_COLUMNS = "b.id, b.auction_id, b.sequence, b.bidder_id, b.bidder_name, b.amount, b.placed_us," \
               " b.ends_at_us, b.extended, b.request_id"
# The highest bid is always the latest one (every accepted bid beats the one before it).
_AUCTION_SELECT = (
    "SELECT a.id, a.seller_id, a.seller_name, a.product_name, a.description, a.currency, a.starting_price,"
    " a.min_increment, a.auction_end_us, a.ends_at_us, a.window_us, a.extension_us, a.status, a.bid_count,"
    f" a.created_us, a.closed_us, {_BID_COLUMNS}"
    " FROM auctions a LEFT JOIN bids b ON b.auction_id = a.id AND b.sequence = a.bid_count"
)
_RACE_RETRIES = 20  # a bid that lost a race but still beats the new price tries again this often


def us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def at(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1_000_000, tz=timezone.utc)


def _bid(row: Sequence[Any], offset: int = 0) -> Bid | None:
    r = row[offset:]
    if r[0] is None:
        return None
    return Bid(id=r[0], auction_id=r[1], sequence=int(r[2]), bidder_id=r[3], bidder_name=r[4],
               amount=int(r[5]), placed_at=at(r[6]), ends_at=at(r[7]), extended=bool(r[8]), request_id=r[9])


def _auction(row: Sequence[Any]) -> Auction:
    return Auction(
        id=row[0], seller_id=row[1], seller_name=row[2], product_name=row[3], description=row[4],
        currency=row[5],
        starting_price=int(row[6]), min_increment=int(row[7]), auction_end=at(row[8]), ends_at=at(row[9]),
        window=timedelta(microseconds=int(row[10])), extension=timedelta(microseconds=int(row[11])),
        status=int(row[12]), bid_count=int(row[13]), created_at=at(row[14]), closed_at=at(row[15]),
        highest=_bid(row, 16),
    )


@timed_operations
class SqlAuctionStore(SqlDialect):
    outbox: Any

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        return await self._transaction(fn)

    def _add_events(self, conn: Any, events: Sequence[Envelope]) -> None:
        if events:
            self.outbox.add(conn, events)

    def _get(self, conn: Any, auction_id: str) -> Auction | None:
        row = self._execute(conn, _AUCTION_SELECT + " WHERE a.id = %s", (auction_id,)).fetchone()
        return _auction(row) if row else None

    def create_schema(self, conn: Any) -> None:
        for statement in SCHEMA:
            self._execute(conn, statement)

    async def create_auction(self, auction: Auction, events: Sequence[Envelope]) -> None:
        def insert(conn: Any) -> None:
            self._execute(
                conn,
                "INSERT INTO auctions (id, seller_id, seller_name, product_name, description, currency,"
                " starting_price, min_increment, auction_end_us, ends_at_us, window_us, extension_us, status,"
                " bid_count, created_us) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, %s)",
                (auction.id, auction.seller_id, auction.seller_name, auction.product_name,
                 auction.description, auction.currency, auction.starting_price, auction.min_increment,
                 us(auction.auction_end),
                 us(auction.ends_at), auction.window // timedelta(microseconds=1),
                 auction.extension // timedelta(microseconds=1), auction.status, us(auction.created_at)),
            )
            self._add_events(conn, events)

        await self._transaction(insert)

    async def get_auction(self, auction_id: str) -> Auction | None:
        return await self._read(lambda conn: self._get(conn, auction_id))

    async def list_auctions(self, status: int, seller_id: str, offset: int, limit: int) -> list[Auction]:
        where, args = [], []
        if status:
            where.append("a.status = %s")
            args.append(status)
        if seller_id:
            where.append("a.seller_id = %s")
            args.append(seller_id)
        sql = (
            _AUCTION_SELECT + (" WHERE " + " AND ".join(where) if where else "")
            + f" ORDER BY a.status, CASE WHEN a.status = {OPEN} THEN a.ends_at_us ELSE -a.closed_us END, a.id"
            + " LIMIT %s OFFSET %s"
        )
        rows = await self._read(lambda conn: self._execute(conn, sql, (*args, limit, offset)).fetchall())
        return [_auction(r) for r in rows]

    async def place_bid(self, auction_id: str, bidder_id: str, request_id: str, decide: Decide,
                        events: PlanEvents) -> PlacedBid:
        def attempt(conn: Any) -> PlacedBid:
            if request_id:
                row = self._execute(
                    conn, f"SELECT {_BID_COLUMNS} FROM bids b WHERE b.auction_id = %s AND b.bidder_id = %s"
                          " AND b.request_id = %s", (auction_id, bidder_id, request_id)).fetchone()
                if row:
                    return PlacedBid(bid=_bid(row), auction=self._get(conn, auction_id), replayed=True)
            lost_race = False
            for _ in range(_RACE_RETRIES):
                auction = self._get(conn, auction_id)
                if auction is None:
                    raise NotFound.of("auction", auction_id)
                plan = decide(auction, lost_race)
                # Apply only if the auction is as we read it: concurrent bidders serialise on this
                # row, and every loser sees rowcount 0 and decides again on the winner's state.
                changed = self._execute(
                    conn,
                    "UPDATE auctions SET bid_count = bid_count + 1, ends_at_us = %s"
                    " WHERE id = %s AND bid_count = %s AND status = %s",
                    (us(plan.after.ends_at), auction_id, auction.bid_count, OPEN),
                ).rowcount
                if changed == 1:
                    b = plan.bid
                    self._execute(
                        conn,
                        "INSERT INTO bids (auction_id, sequence, id, bidder_id, bidder_name, amount,"
                        " placed_us, ends_at_us, extended, request_id)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (b.auction_id, b.sequence, b.id, b.bidder_id, b.bidder_name, b.amount,
                         us(b.placed_at), us(b.ends_at), b.extended, b.request_id),
                    )
                    self._add_events(conn, events(plan))
                    return PlacedBid(bid=b, auction=plan.after, outbid_bidder_id=plan.outbid_bidder_id)
                lost_race = True
            raise RuntimeError(f"bid on {auction_id} lost {_RACE_RETRIES} races in a row")

        return await self._transaction(attempt)

    async def bids_between(self, auction_id: str, after: int, upto: int) -> list[Bid]:
        rows = await self._read(lambda conn: self._execute(
            conn, f"SELECT {_BID_COLUMNS} FROM bids b WHERE b.auction_id = %s AND b.sequence > %s"
                  " AND b.sequence <= %s ORDER BY b.sequence", (auction_id, after, upto)).fetchall())
        return [_bid(r) for r in rows]

    async def list_bids(self, auction_id: str, before: int, limit: int) -> list[Bid]:
        bound = " AND b.sequence < %s" if before else ""
        args = (auction_id, before, limit) if before else (auction_id, limit)
        rows = await self._read(lambda conn: self._execute(
            conn, f"SELECT {_BID_COLUMNS} FROM bids b WHERE b.auction_id = %s{bound}"
                  " ORDER BY b.sequence DESC LIMIT %s", args).fetchall())
        return [_bid(r) for r in rows]

    async def close_due(self, now: datetime, events: CloseEvents, limit: int = 100) -> list[Auction]:
        due = await self._read(lambda conn: [r[0] for r in self._execute(
            conn,
            "SELECT id FROM auctions WHERE status = %s AND ends_at_us <= %s ORDER BY ends_at_us LIMIT %s",
            (OPEN, us(now), limit)).fetchall()])
        closed: list[Auction] = []
        for auction_id in due:
            def close_one(conn: Any, auction_id: str = auction_id) -> Auction | None:
                # Conditional: a bid that extended the end, or another replica's closer, wins.
                changed = self._execute(
                    conn, "UPDATE auctions SET status = %s, closed_us = %s"
                          " WHERE id = %s AND status = %s AND ends_at_us <= %s",
                    (CLOSED, us(now), auction_id, OPEN, us(now))).rowcount
                if changed != 1:
                    return None
                auction = self._get(conn, auction_id)
                assert auction is not None
                self._add_events(conn, events(auction))
                return auction

            done = await self._transaction(close_one)
            if done is not None:
                closed.append(done)
        return closed

    async def next_end(self) -> datetime | None:
        row = await self._read(lambda conn: self._execute(
            conn, "SELECT min(ends_at_us) FROM auctions WHERE status = %s", (OPEN,)).fetchone())
        return at(row[0]) if row and row[0] is not None else None
