"""The poll store's SQL both adapters share: the schema, the queries and the group commit of votes.

Each adapter supplies its dialect: `start()` (create the schema), `_execute(conn, sql, args)` (a
DB-API cursor; SQL here is written with %s placeholders), `_insert_rows` (many rows in one
statement), `_any` (a column in a list of values), `_json` / `_from_json` (a JSON column), the poll
row lock (`_LOCK`: FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE serialises writers anyway)
and the order the closing clock takes due polls in (`_DUE`). A batch of votes is one transaction:
the polls it names are locked, so votes on one poll are numbered 1, 2, 3 ... without gaps, and a
voter's second vote sees the first.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.errors import DomainError
from services.kit.telemetry.metrics import timed_operations
from services.polls.domain import (
    Ballot,
    Choice,
    Policy,
    Poll,
    PollDraft,
    VoteRequest,
    by_poll,
    check_closer,
    decide_votes,
)
from services.polls.store import FinalResults, PollPage


def schema(json: str, without_rowid: str = "") -> str:
    """The poll store's tables; `json` is the JSON column type (JSONB, or TEXT in SQLite)."""
    return f"""
CREATE TABLE IF NOT EXISTS polls (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    options {json} NOT NULL,
    vote_policy SMALLINT NOT NULL,
    allow_change BOOLEAN NOT NULL,
    creator_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closes_at BIGINT,
    closed_at BIGINT,
    vote_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS polls_newest ON polls (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS polls_closing ON polls (closes_at)
    WHERE closed_at IS NULL AND closes_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ballots (
    vote_id TEXT PRIMARY KEY,
    poll_id TEXT NOT NULL REFERENCES polls (id),
    number BIGINT NOT NULL,
    option INTEGER NOT NULL,
    voter_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    replaces_previous BOOLEAN NOT NULL,
    previous_option INTEGER NOT NULL,
    previous_vote_id TEXT NOT NULL,
    request_id TEXT,
    cast_at BIGINT NOT NULL,
    UNIQUE (poll_id, request_id)
);
CREATE TABLE IF NOT EXISTS voters (
    poll_id TEXT NOT NULL,
    voter_key TEXT NOT NULL,
    vote_id TEXT NOT NULL,
    option INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter_key)
){without_rowid};
CREATE TABLE IF NOT EXISTS final_results (
    poll_id TEXT PRIMARY KEY REFERENCES polls (id),
    counts {json} NOT NULL,
    sequence BIGINT NOT NULL,
    consolidated_at BIGINT NOT NULL
);
"""


_POLL_COLUMNS = ("id, question, options, vote_policy, allow_change, creator_id, created_at, closes_at, "
                 "closed_at, vote_count")
_BALLOT_COLUMNS = ("vote_id, poll_id, number, option, voter_key, user_id, replaces_previous, "
                   "previous_option, previous_vote_id, request_id, cast_at")

PollEvents = Callable[[Poll, int], list[Envelope]]


def _ballot(row: Any) -> Ballot:
    return Ballot(vote_id=row[0], poll_id=row[1], number=row[2], option=row[3], voter_key=row[4],
                  user_id=row[5], replaces_previous=bool(row[6]), previous_option=row[7],
                  previous_vote_id=row[8], request_id=row[9] or "", cast_at=row[10])


@timed_operations
class SqlPollStore(abc.ABC):
    """The PollStore port in portable SQL (store.py); the adapters are its dialects."""

    outbox: Any
    db: Any
    _ready: bool
    _LOCK = ""  # appended to the SELECT of a poll a transaction changes
    _DUE = ""  # ORDER BY (and lock) of the polls the closing clock takes

    @abc.abstractmethod
    async def start(self) -> None:
        """Create what the store needs if missing (idempotent; every replica runs it at start)."""

    @abc.abstractmethod
    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any: ...

    @abc.abstractmethod
    def _insert_rows(self, conn: Any, into: str, width: int, rows: Sequence[Sequence[Any]],
                     tail: str = "") -> None:
        """INSERT INTO `into` VALUES (`width` values) for every row, as one statement where it can be."""

    @abc.abstractmethod
    def _any(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A condition `column` is one of `values`, and its arguments."""

    @staticmethod
    @abc.abstractmethod
    def _json(value: Any) -> Any: ...

    @staticmethod
    @abc.abstractmethod
    def _from_json(value: Any) -> Any: ...

    async def _transaction(self, fn: Callable[[Any], Any]) -> Any:
        if not self._ready:
            await self.start()
        return await self.db.transaction(fn)

    async def _read(self, fn: Callable[[Any], Any]) -> Any:
        return await self._transaction(fn)

    def _poll(self, row: Any) -> Poll:
        return Poll(row[0], row[1], tuple(self._from_json(row[2])), Policy(row[3]), bool(row[4]), row[5],
                    row[6], row[7], row[8], row[9])

    def _read_poll(self, conn: Any, poll_id: str, lock: bool = False) -> Poll | None:
        lock_clause = self._LOCK if lock else ""
        row = self._execute(conn, f"SELECT {_POLL_COLUMNS} FROM polls WHERE id = %s{lock_clause}",
                            (poll_id,)).fetchone()
        return self._poll(row) if row else None

    async def create_poll(self, poll_id: str, draft: PollDraft, creator_id: str, now: int,
                          events: Callable[[Poll], list[Envelope]]) -> Poll:
        poll = Poll(poll_id, draft.question, draft.options, draft.policy, draft.allow_change, creator_id, now,
                    draft.closes_at)

        def write(conn: Any) -> Poll:
            self._execute(
                conn, f"INSERT INTO polls ({_POLL_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,NULL,0)",
                (poll.id, poll.question, self._json(list(poll.options)), int(poll.policy), poll.allow_change,
                 poll.creator_id, poll.created_at, poll.closes_at))
            self.outbox.add(conn, events(poll))
            return poll

        return await self._transaction(write)

    async def get_poll(self, poll_id: str) -> Poll | None:
        return await self._read(lambda conn: self._read_poll(conn, poll_id))

    async def list_polls(self, *, limit: int, after: tuple[int, str] | None, open_only: bool | None,
                         creator_id: str, now: int) -> PollPage:
        where, args = [], []
        if after is not None:
            where.append("(created_at, id) < (%s, %s)")
            args += [after[0], after[1]]
        if open_only is True:
            where.append("closed_at IS NULL AND (closes_at IS NULL OR closes_at > %s)")
            args.append(now)
        elif open_only is False:
            where.append("(closed_at IS NOT NULL OR closes_at <= %s)")
            args.append(now)
        if creator_id:
            where.append("creator_id = %s")
            args.append(creator_id)
        sql = (f"SELECT {_POLL_COLUMNS} FROM polls {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY created_at DESC, id DESC LIMIT %s")
        rows = await self._read(lambda conn: self._execute(conn, sql, (*args, limit + 1)).fetchall())
        polls = [self._poll(r) for r in rows[:limit]]
        return PollPage(polls, (polls[-1].created_at, polls[-1].id) if len(rows) > limit else None)

    async def cast_votes(self, requests: Sequence[VoteRequest], now: int,
                         events: Callable[[Ballot], Envelope]) -> list[Ballot | DomainError]:
        return await self._cast(requests, now, lambda ballots: [events(b) for b in ballots])

    async def cast_vote_batch(self, requests: Sequence[VoteRequest], now: int,
                              event: Callable[[Sequence[Ballot]], Envelope]) -> list[Ballot | DomainError]:
        return await self._cast(requests, now, lambda ballots: [event(ballots)] if ballots else [])

    async def _cast(self, requests: Sequence[VoteRequest], now: int,
                    events: Callable[[list[Ballot]], list[Envelope]]) -> list[Ballot | DomainError]:
        """Both vote writes: decide every vote, write the rows, then the outbox rows `events` makes
        of all the accepted ballots (in poll order, then request order), in one transaction."""
        def write(conn: Any) -> list[Ballot | DomainError]:
            outcomes: list[Ballot | DomainError | None] = [None] * len(requests)
            accepted: list[Ballot] = []
            for poll_id, positions in by_poll(requests).items():
                batch = [requests[i] for i in positions]
                poll = self._read_poll(conn, poll_id, lock=True)
                choices: dict[str, Choice] = {}
                answered: dict[str, Ballot] = {}
                if poll is not None:
                    keys = sorted({"user:" + r.user_id for r in batch if r.user_id}
                                  | {"key:" + r.voter_key for r in batch if r.voter_key})
                    if keys and poll.policy != Policy.UNRESTRICTED:
                        among, values = self._any("voter_key", keys)
                        rows = self._execute(conn, "SELECT voter_key, vote_id, option FROM voters "
                                             f"WHERE poll_id = %s AND {among}", (poll_id, *values)).fetchall()
                        choices = {k: Choice(v, o) for k, v, o in rows}
                    rids = sorted({r.request_id for r in batch if r.request_id})
                    if rids:
                        among, values = self._any("request_id", rids)
                        rows = self._execute(conn, f"SELECT {_BALLOT_COLUMNS} FROM ballots "
                                             f"WHERE poll_id = %s AND {among}", (poll_id, *values)).fetchall()
                        answered = {row[9]: _ballot(row) for row in rows}
                decided = decide_votes(poll, poll_id, batch, (str(uuid.uuid4()) for _ in batch), now,
                                       choices, answered)
                for i, outcome in zip(positions, decided.outcomes):
                    outcomes[i] = outcome
                if not decided.new_ballots:
                    continue
                self._insert_rows(
                    conn, f"ballots ({_BALLOT_COLUMNS})", 11,
                    [(b.vote_id, b.poll_id, b.number, b.option, b.voter_key, b.user_id, b.replaces_previous,
                      b.previous_option, b.previous_vote_id, b.request_id or None, b.cast_at)
                     for b in decided.new_ballots])
                if decided.choices:
                    self._insert_rows(
                        conn, "voters (poll_id, voter_key, vote_id, option)", 4,
                        [(poll_id, key, c.vote_id, c.option) for key, c in decided.choices.items()],
                        " ON CONFLICT (poll_id, voter_key) DO UPDATE SET vote_id = excluded.vote_id, "
                        "option = excluded.option")
                self._execute(conn, "UPDATE polls SET vote_count = %s WHERE id = %s",
                              (decided.vote_count, poll_id))
                accepted.extend(decided.new_ballots)
            if accepted:
                self.outbox.add(conn, events(accepted))
            return outcomes  # type: ignore[return-value]

        return await self._transaction(write)

    async def close_poll(self, poll_id: str, closer_id: str, now: int, events: PollEvents) -> Poll:
        def write(conn: Any) -> Poll:
            poll = check_closer(self._read_poll(conn, poll_id, lock=True), poll_id, closer_id)
            if poll.closed_at is not None:
                return poll
            return self._close(conn, poll, now, events)

        return await self._transaction(write)

    def _close(self, conn: Any, poll: Poll, now: int, events: PollEvents) -> Poll:
        rows = self._execute(conn, f"UPDATE polls SET closed_at = %s WHERE id = %s RETURNING {_POLL_COLUMNS}",
                             (now, poll.id)).fetchall()
        closed = self._poll(rows[0])
        self.outbox.add(conn, events(closed, now))
        return closed

    async def close_due(self, now: int, events: PollEvents) -> list[Poll]:
        def write(conn: Any) -> list[Poll]:
            rows = self._execute(conn, f"SELECT {_POLL_COLUMNS} FROM polls WHERE closed_at IS NULL "
                                 f"AND closes_at <= %s{self._DUE}", (now,)).fetchall()
            return [self._close(conn, self._poll(r), now, events) for r in rows]

        return await self._transaction(write)

    async def next_closing(self) -> int | None:
        return await self._read(lambda conn: self._execute(
            conn, "SELECT min(closes_at) FROM polls WHERE closed_at IS NULL AND closes_at IS NOT NULL"
        ).fetchone()[0])

    async def save_final(self, results: FinalResults) -> bool:
        def write(conn: Any) -> bool:
            known = self._execute(conn, "SELECT 1 FROM polls WHERE id = %s", (results.poll_id,)).fetchone()
            if known is None:
                return False
            self._execute(
                conn, "INSERT INTO final_results (poll_id, counts, sequence, consolidated_at) "
                "VALUES (%s,%s,%s,%s) ON CONFLICT (poll_id) DO NOTHING",
                (results.poll_id, self._json({str(k): v for k, v in results.counts.items()}),
                 results.sequence, results.consolidated_at))
            return True

        return await self._transaction(write)

    async def final_results(self, poll_id: str) -> FinalResults | None:
        row = await self._read(lambda conn: self._execute(
            conn, "SELECT poll_id, counts, sequence, consolidated_at FROM final_results WHERE poll_id = %s",
            (poll_id,)).fetchone())
        if row is None:
            return None
        return FinalResults(row[0], {int(k): v for k, v in self._from_json(row[1]).items()}, row[2], row[3])

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
