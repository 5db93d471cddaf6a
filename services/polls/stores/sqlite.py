"""The embedded adapters: polls, votes, outbox, final results and live tallies in one SQLite file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from agora.events.v1.envelope_pb2 import Envelope

from services.kit.bus.stores.sqlite import SqliteOutbox
from services.kit.errors import DomainError
from services.kit.stores.sqlite import SqliteDatabase
from services.kit.telemetry.metrics import timed_operations
from services.polls.domain import (
    Ballot,
    Choice,
    Policy,
    Poll,
    PollDraft,
    Tally,
    TallyChange,
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
    options TEXT NOT NULL,
    vote_policy INTEGER NOT NULL,
    allow_change INTEGER NOT NULL,
    creator_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    closes_at INTEGER,
    closed_at INTEGER,
    vote_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS polls_newest ON polls (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS polls_closing ON polls (closes_at) WHERE closed_at IS NULL AND closes_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ballots (
    vote_id TEXT PRIMARY KEY,
    poll_id TEXT NOT NULL REFERENCES polls (id),
    number INTEGER NOT NULL,
    option INTEGER NOT NULL,
    voter_key TEXT NOT NULL,
    user_id TEXT NOT NULL,
    replaces_previous INTEGER NOT NULL,
    previous_option INTEGER NOT NULL,
    previous_vote_id TEXT NOT NULL,
    request_id TEXT,
    cast_at INTEGER NOT NULL,
    UNIQUE (poll_id, request_id)
);
CREATE TABLE IF NOT EXISTS voters (
    poll_id TEXT NOT NULL,
    voter_key TEXT NOT NULL,
    vote_id TEXT NOT NULL,
    option INTEGER NOT NULL,
    PRIMARY KEY (poll_id, voter_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS final_results (
    poll_id TEXT PRIMARY KEY REFERENCES polls (id),
    counts TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    consolidated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS live_tallies (
    poll_id TEXT PRIMARY KEY,
    counts TEXT NOT NULL,
    applied TEXT NOT NULL,
    version INTEGER NOT NULL,
    closed_total INTEGER,
    final INTEGER NOT NULL DEFAULT 0
);
"""

_POLL_COLUMNS = "id, question, options, vote_policy, allow_change, creator_id, created_at, closes_at, closed_at, vote_count"


def _poll(row: Any) -> Poll:
    return Poll(row[0], row[1], tuple(json.loads(row[2])), Policy(row[3]), bool(row[4]), row[5], row[6],
                row[7], row[8], row[9])


def _ballot(row: Any) -> Ballot:
    return Ballot(vote_id=row[0], poll_id=row[1], number=row[2], option=row[3], voter_key=row[4], user_id=row[5],
                  replaces_previous=bool(row[6]), previous_option=row[7], previous_vote_id=row[8],
                  request_id=row[9] or "", cast_at=row[10])


_BALLOT_COLUMNS = ("vote_id, poll_id, number, option, voter_key, user_id, replaces_previous, previous_option, "
                   "previous_vote_id, request_id, cast_at")


def _in(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


@timed_operations
class SqlitePollStore:
    def __init__(self, path: str | SqliteDatabase) -> None:
        self.db = path if isinstance(path, SqliteDatabase) else SqliteDatabase(path)
        self.outbox = SqliteOutbox("polls_outbox")
        self._ready = False

    async def start(self) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)
            self.outbox.create_schema(conn)

        await self.db.run(create)
        self._ready = True

    async def _conn(self) -> None:
        if not self._ready:
            await self.start()

    async def _tx(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        await self._conn()
        return await self.db.transaction(fn)

    def relay_connection(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db.path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def create_poll(self, poll_id: str, draft: PollDraft, creator_id: str, now: int,
                          events: Callable[[Poll], list[Envelope]]) -> Poll:
        poll = Poll(poll_id, draft.question, draft.options, draft.policy, draft.allow_change, creator_id, now,
                    draft.closes_at)

        def write(conn: sqlite3.Connection) -> Poll:
            conn.execute(
                f"INSERT INTO polls ({_POLL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (poll.id, poll.question, json.dumps(list(poll.options)), int(poll.policy), int(poll.allow_change),
                 poll.creator_id, poll.created_at, poll.closes_at, None, 0),
            )
            self.outbox.add(conn, events(poll))
            return poll

        return await self._tx(write)

    @staticmethod
    def _read_poll(conn: sqlite3.Connection, poll_id: str) -> Poll | None:
        row = conn.execute(f"SELECT {_POLL_COLUMNS} FROM polls WHERE id = ?", (poll_id,)).fetchone()
        return _poll(row) if row else None

    async def get_poll(self, poll_id: str) -> Poll | None:
        await self._conn()
        return await self.db.run(lambda conn: self._read_poll(conn, poll_id))

    async def list_polls(self, *, limit: int, after: tuple[int, str] | None, open_only: bool | None,
                         creator_id: str, now: int) -> PollPage:
        where, args = [], []
        if after is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [after[0], after[0], after[1]]
        if open_only is True:
            where.append("closed_at IS NULL AND (closes_at IS NULL OR closes_at > ?)")
            args.append(now)
        elif open_only is False:
            where.append("(closed_at IS NOT NULL OR closes_at <= ?)")
            args.append(now)
        if creator_id:
            where.append("creator_id = ?")
            args.append(creator_id)
        sql = (f"SELECT {_POLL_COLUMNS} FROM polls {'WHERE ' + ' AND '.join(where) if where else ''} "
               "ORDER BY created_at DESC, id DESC LIMIT ?")
        await self._conn()
        rows = await self.db.run(lambda conn: conn.execute(sql, (*args, limit + 1)).fetchall())
        polls = [_poll(r) for r in rows[:limit]]
        more = len(rows) > limit
        return PollPage(polls, (polls[-1].created_at, polls[-1].id) if more else None)

    async def cast_votes(self, requests: Sequence[VoteRequest], now: int,
                         events: Callable[[Ballot], Envelope]) -> list[Ballot | DomainError]:
        def write(conn: sqlite3.Connection) -> list[Ballot | DomainError]:
            outcomes: list[Ballot | DomainError | None] = [None] * len(requests)
            for poll_id, positions in by_poll(requests).items():
                batch = [requests[i] for i in positions]
                poll = self._read_poll(conn, poll_id)
                choices: dict[str, Choice] = {}
                answered: dict[str, Ballot] = {}
                if poll is not None:
                    keys = sorted({"user:" + r.user_id for r in batch if r.user_id}
                                  | {"key:" + r.voter_key for r in batch if r.voter_key})
                    if keys and poll.policy != Policy.UNRESTRICTED:
                        for key, vote_id, option in conn.execute(
                                f"SELECT voter_key, vote_id, option FROM voters WHERE poll_id = ? "
                                f"AND voter_key IN ({_in(keys)})", (poll_id, *keys)):
                            choices[key] = Choice(vote_id, option)
                    rids = sorted({r.request_id for r in batch if r.request_id})
                    if rids:
                        for row in conn.execute(
                                f"SELECT {_BALLOT_COLUMNS} FROM ballots WHERE poll_id = ? "
                                f"AND request_id IN ({_in(rids)})", (poll_id, *rids)):
                            answered[row[9]] = _ballot(row)
                decided = decide_votes(poll, poll_id, batch, (str(uuid.uuid4()) for _ in batch), now,
                                       choices, answered)
                for i, outcome in zip(positions, decided.outcomes):
                    outcomes[i] = outcome
                if not decided.new_ballots:
                    continue
                conn.executemany(
                    f"INSERT INTO ballots ({_BALLOT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    [(b.vote_id, b.poll_id, b.number, b.option, b.voter_key, b.user_id, int(b.replaces_previous),
                      b.previous_option, b.previous_vote_id, b.request_id or None, b.cast_at)
                     for b in decided.new_ballots],
                )
                conn.executemany(
                    "INSERT INTO voters (poll_id, voter_key, vote_id, option) VALUES (?,?,?,?) "
                    "ON CONFLICT (poll_id, voter_key) DO UPDATE SET vote_id = excluded.vote_id, option = excluded.option",
                    [(poll_id, key, c.vote_id, c.option) for key, c in decided.choices.items()],
                )
                conn.execute("UPDATE polls SET vote_count = ? WHERE id = ?", (decided.vote_count, poll_id))
                self.outbox.add(conn, [events(b) for b in decided.new_ballots])
            return outcomes  # type: ignore[return-value]

        return await self._tx(write)

    async def close_poll(self, poll_id: str, closer_id: str, now: int,
                         events: Callable[[Poll, int], list[Envelope]]) -> Poll:
        def write(conn: sqlite3.Connection) -> Poll:
            poll = check_closer(self._read_poll(conn, poll_id), poll_id, closer_id)
            if poll.closed_at is not None:
                return poll
            return self._close(conn, poll, now, events)

        return await self._tx(write)

    def _close(self, conn: sqlite3.Connection, poll: Poll, now: int,
               events: Callable[[Poll, int], list[Envelope]]) -> Poll:
        conn.execute("UPDATE polls SET closed_at = ? WHERE id = ?", (now, poll.id))
        closed = self._read_poll(conn, poll.id)
        assert closed is not None
        self.outbox.add(conn, events(closed, now))
        return closed

    async def close_due(self, now: int, events: Callable[[Poll, int], list[Envelope]]) -> list[Poll]:
        def write(conn: sqlite3.Connection) -> list[Poll]:
            rows = conn.execute(
                f"SELECT {_POLL_COLUMNS} FROM polls WHERE closed_at IS NULL AND closes_at <= ? ORDER BY closes_at",
                (now,)).fetchall()
            return [self._close(conn, _poll(r), now, events) for r in rows]

        return await self._tx(write)

    async def next_closing(self) -> int | None:
        await self._conn()
        return await self.db.run(lambda conn: conn.execute(
            "SELECT min(closes_at) FROM polls WHERE closed_at IS NULL AND closes_at IS NOT NULL").fetchone()[0])

    async def save_final(self, results: FinalResults) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            if conn.execute("SELECT 1 FROM polls WHERE id = ?", (results.poll_id,)).fetchone() is None:
                return False
            conn.execute(
                "INSERT INTO final_results (poll_id, counts, sequence, consolidated_at) VALUES (?,?,?,?) "
                "ON CONFLICT (poll_id) DO NOTHING",
                (results.poll_id, json.dumps({str(k): v for k, v in results.counts.items()}), results.sequence,
                 results.consolidated_at))
            return True

        return await self._tx(write)

    async def final_results(self, poll_id: str) -> FinalResults | None:
        await self._conn()
        row = await self.db.run(lambda conn: conn.execute(
            "SELECT poll_id, counts, sequence, consolidated_at FROM final_results WHERE poll_id = ?",
            (poll_id,)).fetchone())
        if row is None:
            return None
        return FinalResults(row[0], {int(k): v for k, v in json.loads(row[1]).items()}, row[2], row[3])

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()


@timed_operations
class SqliteTallyStore:
    """Live tallies in SQLite. `changes()` reports the writes of this process: the embedded mode
    is one process, so that is every write."""

    def __init__(self, path: str | SqliteDatabase) -> None:
        self.db = path if isinstance(path, SqliteDatabase) else SqliteDatabase(path)
        self._ready = False
        self._listeners: weakref.WeakSet[asyncio.Queue] = weakref.WeakSet()

    async def start(self) -> None:
        await self.db.run(lambda conn: conn.executescript(SCHEMA))
        self._ready = True

    async def _conn(self) -> None:
        if not self._ready:
            await self.start()

    @staticmethod
    def _tally(row: Any) -> Tally:
        return Tally(row[0], {int(k): v for k, v in json.loads(row[1]).items()},
                     tuple(tuple(r) for r in json.loads(row[2])), row[3], row[4], bool(row[5]))

    async def load(self, poll_ids: Sequence[str]) -> dict[str, Tally]:
        if not poll_ids:
            return {}
        await self._conn()
        ids = list(poll_ids)
        rows = await self.db.run(lambda conn: conn.execute(
            f"SELECT poll_id, counts, applied, version, closed_total, final FROM live_tallies "
            f"WHERE poll_id IN ({_in(ids)})", ids).fetchall())
        return {row[0]: self._tally(row) for row in rows}

    async def commit(self, changes: Sequence[TallyChange]) -> set[str]:
        def write(conn: sqlite3.Connection) -> tuple[set[str], list[Tally]]:
            refused: set[str] = set()
            written: list[Tally] = []
            for change in changes:
                row = conn.execute(
                    "SELECT poll_id, counts, applied, version, closed_total, final FROM live_tallies "
                    "WHERE poll_id = ?", (change.poll_id,)).fetchone()
                before = self._tally(row) if row else Tally(change.poll_id)
                if before.version != change.base:
                    refused.add(change.poll_id)
                    continue
                after = change.result(before)
                conn.execute(
                    "INSERT INTO live_tallies (poll_id, counts, applied, version, closed_total, final) "
                    "VALUES (?,?,?,?,?,?) ON CONFLICT (poll_id) DO UPDATE SET counts = excluded.counts, "
                    "applied = excluded.applied, version = excluded.version, "
                    "closed_total = excluded.closed_total, final = excluded.final",
                    (after.poll_id, json.dumps({str(k): v for k, v in after.counts.items()}),
                     json.dumps([list(r) for r in after.applied]), after.version, after.closed_total,
                     int(after.final)))
                written.append(after)
            return refused, written

        await self._conn()
        refused, written = await self.db.transaction(write)
        for queue in list(self._listeners):
            for tally in written:
                if queue.full():
                    queue.get_nowait()  # a snapshot feed: the oldest change is the one to lose
                queue.put_nowait(tally)
        return refused

    async def changes(self) -> AsyncIterator[Tally]:
        queue: asyncio.Queue[Tally] = asyncio.Queue(maxsize=10_000)
        self._listeners.add(queue)
        while True:
            yield await queue.get()

    async def ping(self) -> bool:
        return await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
