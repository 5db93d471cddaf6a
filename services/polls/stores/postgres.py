"""The real poll store on PostgreSQL: polls, votes, the outbox and final results, in the domain's schema.

A batch of votes is one transaction: the polls it names are locked (FOR UPDATE, in id order), so
votes on one poll are numbered 1, 2, 3 ... without gaps, and a voter's second vote sees the first.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2
from agora.events.v1.envelope_pb2 import Envelope
from psycopg2.extras import Json, execute_values

from services.kit.bus.stores.postgres import PostgresOutbox
from services.kit.errors import DomainError
from services.kit.stores.postgres import PostgresDatabase
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

SCHEMA = """
CREATE TABLE IF NOT EXISTS polls (
    id TEXT PRIMARY KEY,
    question TEXT NOT NULL,
    options JSONB NOT NULL,
    vote_policy SMALLINT NOT NULL,
    allow_change BOOLEAN NOT NULL,
    creator_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closes_at BIGINT,
    closed_at BIGINT,
    vote_count BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS polls_newest ON polls (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS polls_closing ON polls (closes_at) WHERE closed_at IS NULL AND closes_at IS NOT NULL;
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
);
CREATE TABLE IF NOT EXISTS final_results (
    poll_id TEXT PRIMARY KEY REFERENCES polls (id),
    counts JSONB NOT NULL,
    sequence BIGINT NOT NULL,
    consolidated_at BIGINT NOT NULL
);
"""

_POLL_COLUMNS = "id, question, options, vote_policy, allow_change, creator_id, created_at, closes_at, closed_at, vote_count"
_BALLOT_COLUMNS = ("vote_id, poll_id, number, option, voter_key, user_id, replaces_previous, previous_option, "
                   "previous_vote_id, request_id, cast_at")


def _poll(row: Any) -> Poll:
    return Poll(row[0], row[1], tuple(row[2]), Policy(row[3]), row[4], row[5], row[6], row[7], row[8], row[9])


def _ballot(row: Any) -> Ballot:
    return Ballot(vote_id=row[0], poll_id=row[1], number=row[2], option=row[3], voter_key=row[4], user_id=row[5],
                  replaces_previous=row[6], previous_option=row[7], previous_vote_id=row[8],
                  request_id=row[9] or "", cast_at=row[10])


@timed_operations
class PostgresPollStore:
    def __init__(self, url: str, *, schema: str = "polls", max_connections: int = 8) -> None:
        self.url, self.schema = url, schema
        self.db = PostgresDatabase(url, schema=schema, max_connections=max_connections)
        self.outbox = PostgresOutbox("polls_outbox")
        self._ready = False
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Create the schema's tables if missing (idempotent; every replica runs it at start)."""
        async with self._lock:
            if self._ready:
                return

            def create() -> None:
                conn = self.relay_connection()
                lock = (f"{self.schema}.polls",)
                try:
                    # One replica at a time: concurrent CREATE ... IF NOT EXISTS can still collide.
                    with conn, conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_lock(hashtext(%s))", lock)
                    with conn, conn.cursor() as cur:
                        cur.execute(SCHEMA)
                    self.outbox.create_schema(conn)
                    with conn, conn.cursor() as cur:
                        cur.execute("SELECT pg_advisory_unlock(hashtext(%s))", lock)
                finally:
                    conn.close()  # also releases the lock if anything above failed

            await asyncio.to_thread(create)
            self._ready = True

    async def _tx(self, fn: Callable[[Any], Any]) -> Any:
        if not self._ready:
            await self.start()
        return await self.db.transaction(fn)

    def relay_connection(self) -> Any:
        conn = psycopg2.connect(self.url, connect_timeout=3)
        with conn, conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(f'SET search_path TO "{self.schema}", public')
        return conn

    async def create_poll(self, poll_id: str, draft: PollDraft, creator_id: str, now: int,
                          events: Callable[[Poll], list[Envelope]]) -> Poll:
        poll = Poll(poll_id, draft.question, draft.options, draft.policy, draft.allow_change, creator_id, now,
                    draft.closes_at)

        def write(conn: Any) -> Poll:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO polls ({_POLL_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,NULL,0)",
                    (poll.id, poll.question, Json(list(poll.options)), int(poll.policy), poll.allow_change,
                     poll.creator_id, poll.created_at, poll.closes_at))
                self.outbox.add(cur, events(poll))
            return poll

        return await self._tx(write)

    @staticmethod
    def _read_poll(cur: Any, poll_id: str, lock: bool = False) -> Poll | None:
        cur.execute(f"SELECT {_POLL_COLUMNS} FROM polls WHERE id = %s{' FOR UPDATE' if lock else ''}", (poll_id,))
        row = cur.fetchone()
        return _poll(row) if row else None

    async def get_poll(self, poll_id: str) -> Poll | None:
        def read(conn: Any) -> Poll | None:
            with conn.cursor() as cur:
                return self._read_poll(cur, poll_id)

        return await self._tx(read)

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

        def read(conn: Any) -> list[Any]:
            with conn.cursor() as cur:
                cur.execute(sql, (*args, limit + 1))
                return cur.fetchall()

        rows = await self._tx(read)
        polls = [_poll(r) for r in rows[:limit]]
        return PollPage(polls, (polls[-1].created_at, polls[-1].id) if len(rows) > limit else None)

    async def cast_votes(self, requests: Sequence[VoteRequest], now: int,
                         events: Callable[[Ballot], Envelope]) -> list[Ballot | DomainError]:
        def write(conn: Any) -> list[Ballot | DomainError]:
            outcomes: list[Ballot | DomainError | None] = [None] * len(requests)
            with conn.cursor() as cur:
                for poll_id, positions in by_poll(requests).items():
                    batch = [requests[i] for i in positions]
                    poll = self._read_poll(cur, poll_id, lock=True)
                    choices: dict[str, Choice] = {}
                    answered: dict[str, Ballot] = {}
                    if poll is not None:
                        keys = sorted({"user:" + r.user_id for r in batch if r.user_id}
                                      | {"key:" + r.voter_key for r in batch if r.voter_key})
                        if keys and poll.policy != Policy.UNRESTRICTED:
                            cur.execute("SELECT voter_key, vote_id, option FROM voters "
                                        "WHERE poll_id = %s AND voter_key = ANY(%s)", (poll_id, keys))
                            choices = {k: Choice(v, o) for k, v, o in cur.fetchall()}
                        rids = sorted({r.request_id for r in batch if r.request_id})
                        if rids:
                            cur.execute(f"SELECT {_BALLOT_COLUMNS} FROM ballots "
                                        "WHERE poll_id = %s AND request_id = ANY(%s)", (poll_id, rids))
                            answered = {row[9]: _ballot(row) for row in cur.fetchall()}
                    decided = decide_votes(poll, poll_id, batch, (str(uuid.uuid4()) for _ in batch), now,
                                           choices, answered)
                    for i, outcome in zip(positions, decided.outcomes):
                        outcomes[i] = outcome
                    if not decided.new_ballots:
                        continue
                    execute_values(
                        cur, f"INSERT INTO ballots ({_BALLOT_COLUMNS}) VALUES %s",
                        [(b.vote_id, b.poll_id, b.number, b.option, b.voter_key, b.user_id, b.replaces_previous,
                          b.previous_option, b.previous_vote_id, b.request_id or None, b.cast_at)
                         for b in decided.new_ballots], page_size=1000)
                    if decided.choices:
                        execute_values(
                            cur, "INSERT INTO voters (poll_id, voter_key, vote_id, option) VALUES %s "
                            "ON CONFLICT (poll_id, voter_key) DO UPDATE SET vote_id = excluded.vote_id, "
                            "option = excluded.option",
                            [(poll_id, key, c.vote_id, c.option) for key, c in decided.choices.items()],
                            page_size=1000)
                    cur.execute("UPDATE polls SET vote_count = %s WHERE id = %s", (decided.vote_count, poll_id))
                    self.outbox.add(cur, [events(b) for b in decided.new_ballots])
            return outcomes  # type: ignore[return-value]

        return await self._tx(write)

    async def close_poll(self, poll_id: str, closer_id: str, now: int,
                         events: Callable[[Poll, int], list[Envelope]]) -> Poll:
        def write(conn: Any) -> Poll:
            with conn.cursor() as cur:
                poll = check_closer(self._read_poll(cur, poll_id, lock=True), poll_id, closer_id)
                if poll.closed_at is not None:
                    return poll
                return self._close(cur, poll, now, events)

        return await self._tx(write)

    def _close(self, cur: Any, poll: Poll, now: int, events: Callable[[Poll, int], list[Envelope]]) -> Poll:
        cur.execute(f"UPDATE polls SET closed_at = %s WHERE id = %s RETURNING {_POLL_COLUMNS}", (now, poll.id))
        closed = _poll(cur.fetchone())
        self.outbox.add(cur, events(closed, now))
        return closed

    async def close_due(self, now: int, events: Callable[[Poll, int], list[Envelope]]) -> list[Poll]:
        def write(conn: Any) -> list[Poll]:
            with conn.cursor() as cur:
                # SKIP LOCKED: another replica's clock closing the same polls right now takes them.
                cur.execute(f"SELECT {_POLL_COLUMNS} FROM polls WHERE closed_at IS NULL AND closes_at <= %s "
                            "ORDER BY id FOR UPDATE SKIP LOCKED", (now,))
                return [self._close(cur, _poll(r), now, events) for r in cur.fetchall()]

        return await self._tx(write)

    async def next_closing(self) -> int | None:
        def read(conn: Any) -> int | None:
            with conn.cursor() as cur:
                cur.execute("SELECT min(closes_at) FROM polls WHERE closed_at IS NULL AND closes_at IS NOT NULL")
                return cur.fetchone()[0]

        return await self._tx(read)

    async def save_final(self, results: FinalResults) -> bool:
        def write(conn: Any) -> bool:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM polls WHERE id = %s", (results.poll_id,))
                if cur.fetchone() is None:
                    return False
                cur.execute(
                    "INSERT INTO final_results (poll_id, counts, sequence, consolidated_at) VALUES (%s,%s,%s,%s) "
                    "ON CONFLICT (poll_id) DO NOTHING",
                    (results.poll_id, Json({str(k): v for k, v in results.counts.items()}), results.sequence,
                     results.consolidated_at))
                return True

        return await self._tx(write)

    async def final_results(self, poll_id: str) -> FinalResults | None:
        def read(conn: Any) -> Any:
            with conn.cursor() as cur:
                cur.execute("SELECT poll_id, counts, sequence, consolidated_at FROM final_results WHERE poll_id = %s",
                            (poll_id,))
                return cur.fetchone()

        row = await self._tx(read)
        if row is None:
            return None
        return FinalResults(row[0], {int(k): v for k, v in row[1].items()}, row[2], row[3])

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()

    async def drop(self) -> None:
        """Remove the whole schema (tests)."""
        def drop(conn: Any) -> None:
            with conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

        await self.db.transaction(drop)
