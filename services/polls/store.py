"""The polls domain's storage ports and the factory that picks their adapters.

Two ports, because the seed keeps two kinds of data apart:

- `PollStore` (PostgreSQL; SQLite embedded): polls, options, the votes that make a voter unique,
  the `polls.*` events in a transactional outbox, and the consolidated final results.
- `TallyStore` (MongoDB; SQLite embedded): the live tallies the tally consumer keeps, updated
  with one conditional write per poll per batch, and a feed of their changes for WatchResults.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.outbox import Outbox
from services.kit.config import Settings
from services.kit.errors import DomainError
from services.polls.domain import Ballot, Poll, PollDraft, Tally, TallyChange, VoteRequest


@dataclass(frozen=True)
class FinalResults:
    poll_id: str
    counts: Mapping[int, int]
    sequence: int
    consolidated_at: int


@dataclass(frozen=True)
class PollPage:
    polls: list[Poll]
    next_cursor: tuple[int, str] | None  # (created_at, id) of the last poll when more follow


class PollStore(Protocol):
    outbox: Outbox

    async def start(self) -> None:
        """Create what the store needs if missing (idempotent). The server calls it before the port
        answers; a store used before it (tests, the tally process alone) starts itself on first use."""

    async def create_poll(self, poll_id: str, draft: PollDraft, creator_id: str, now: int,
                          events: Callable[[Poll], list[Envelope]]) -> Poll: ...

    async def get_poll(self, poll_id: str) -> Poll | None: ...

    async def list_polls(self, *, limit: int, after: tuple[int, str] | None, open_only: bool | None,
                         creator_id: str, now: int) -> PollPage: ...

    async def cast_votes(self, requests: Sequence[VoteRequest], now: int,
                         events: Callable[[Ballot], Envelope]) -> list[Ballot | DomainError]:
        """Decide and record a batch of votes in one transaction (group commit), with one
        `polls.vote.cast` outbox event per accepted vote; one outcome per request, in order."""

    async def cast_vote_batch(self, requests: Sequence[VoteRequest], now: int,
                              event: Callable[[Sequence[Ballot]], Envelope]) -> list[Ballot | DomainError]:
        """As cast_votes, but the accepted votes share one outbox event, `event(accepted)` (none
        when no vote is accepted): a CastVotes batch is one row, one bus message."""

    async def close_poll(self, poll_id: str, closer_id: str, now: int,
                         events: Callable[[Poll, int], list[Envelope]]) -> Poll:
        """Close a poll on its creator's word (errors from domain.check_closer); unchanged if closed."""

    async def close_due(self, now: int, events: Callable[[Poll, int], list[Envelope]]) -> list[Poll]:
        """Close every open poll whose closes_at has passed; returns those this call closed."""

    async def next_closing(self) -> int | None:
        """The earliest closes_at of an open poll."""

    async def save_final(self, results: FinalResults) -> bool:
        """Record consolidated results once (a second call keeps the first); False for an unknown poll."""

    async def final_results(self, poll_id: str) -> FinalResults | None: ...

    def relay_connection(self) -> Any:
        """A new blocking connection for the outbox relay (its own, on its own thread)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class TallyStore(Protocol):
    async def start(self) -> None: ...

    async def load(self, poll_ids: Sequence[str]) -> dict[str, Tally]:
        """The stored tallies of these polls (absent: none yet)."""

    async def commit(self, changes: Sequence[TallyChange]) -> set[str]:
        """Apply every change whose poll is still at its `base` version, one write per poll;
        returns the polls whose change was refused (another writer moved them: reload, recompute)."""

    def changes(self) -> AsyncIterator[Tally]:
        """Tallies as they change, from whichever process wrote them (best effort: a snapshot
        feed, so a missed change is made good by the next one)."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def open_stores(settings: Settings, *, schema: str = "polls", mongo_db: str | None = None,
                sqlite_path: str | None = None) -> tuple[PollStore, TallyStore]:
    """PostgreSQL + MongoDB when settings.real, else one SQLite file under settings.data_dir."""
    if settings.real:
        from services.polls.stores.mongo import MongoTallyStore
        from services.polls.stores.postgres import PostgresPollStore

        return (PostgresPollStore(settings.postgres_url, schema=schema),
                MongoTallyStore(settings.mongo_url, mongo_db or settings.mongo_db))
    from services.kit.stores.sqlite import SqliteDatabase
    from services.polls.stores.sqlite import SqlitePollStore, SqliteTallyStore

    db = SqliteDatabase(sqlite_path or settings.data_dir / "polls.sqlite3")
    return SqlitePollStore(db), SqliteTallyStore(db)
