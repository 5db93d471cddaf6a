"""The auctions storage port and the factory that picks its adapter (PostgreSQL when real, else SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.auctions.domain import Auction, Bid, BidPlan
from services.kit.config import Settings

# decide(auction, lost_race) -> the plan for the bid, or raises why the bid is refused.
Decide = Callable[[Auction, bool], BidPlan]
# What to publish for a change, built by the service from the plan or the closed auction.
PlanEvents = Callable[[BidPlan], Sequence[Envelope]]
CloseEvents = Callable[[Auction], Sequence[Envelope]]


@dataclass(frozen=True)
class PlacedBid:
    bid: Bid
    auction: Auction  # after the bid
    outbid_bidder_id: str = ""
    replayed: bool = False  # a retry of a request_id already accepted: nothing new happened


class AuctionStore(Protocol):
    outbox: Any  # the bus outbox table the relay drains

    async def start(self) -> None: ...

    async def create_auction(self, auction: Auction, events: Sequence[Envelope]) -> None: ...

    async def get_auction(self, auction_id: str) -> Auction | None: ...

    async def list_auctions(self, status: int, seller_id: str, offset: int, limit: int) -> list[Auction]:
        """Open auctions by soonest end, then closed ones by latest close; status 0 = both."""

    async def place_bid(self, auction_id: str, bidder_id: str, request_id: str, decide: Decide,
                        events: PlanEvents) -> PlacedBid:
        """In one transaction: replay a known request_id, else decide on the latest state and apply it
        only if nobody changed the auction meanwhile (re-deciding with lost_race=True when someone
        did). The bid's sequence is the auction's bid count after it: gapless. NotFound if no auction."""

    async def bids_between(self, auction_id: str, after: int, upto: int) -> list[Bid]:
        """Bids with after < sequence <= upto, oldest first."""

    async def list_bids(self, auction_id: str, before: int, limit: int) -> list[Bid]:
        """Bids with sequence < before (0 = no bound), highest sequence first."""

    async def close_due(self, now: datetime, events: CloseEvents, limit: int = 100) -> list[Auction]:
        """Close open auctions whose end has passed (each in its own transaction, only if still due)."""

    async def next_end(self) -> datetime | None:
        """The soonest end among open auctions."""

    def relay_connection(self) -> Any: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_store(settings: Settings, *, schema: str = "auctions") -> AuctionStore:
    """PostgreSQL (in `schema`) for real backends, a SQLite file under data_dir otherwise (not opened yet)."""
    if settings.real:
        from services.auctions.stores.postgres import PostgresAuctionStore

        return PostgresAuctionStore(settings.postgres_url, schema=schema)
    from services.auctions.stores.sqlite import SqliteAuctionStore

    return SqliteAuctionStore(settings.data_dir / "auctions.sqlite3")
