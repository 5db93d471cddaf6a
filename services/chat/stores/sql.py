"""The chat store in portable SQL (PostgreSQL and SQLite 3.35+); each backend module supplies its dialect.

A room's sequence lives on its row: every write that adds an entry first locks that row
(`FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` serialises writers anyway), so the
next sequence is assigned, the entry inserted and its event written to the outbox in one
transaction. Sequences commit in order with no gap, and a later sequence is never visible
before an earlier one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, TypeVar

from services.chat.domain import (
    DEFAULT_ROOM,
    AttachmentInfo,
    Author,
    Draft,
    Entry,
    Kind,
    Member,
    Room,
    new_id,
)
from services.chat.events import envelope_for
from services.kit.errors import AlreadyExists, NotFound
from services.kit.telemetry.metrics import timed_operations

T = TypeVar("T")

_ENTRY = (
    "room_id, seq, id, kind, user_id, username, text, attachment_id, attachment_name, attachment_type, "
    "attachment_size, sent_at, client_message_id, timed_out"
)
_ROOM = (
    "r.id, r.title, r.description, r.created_by, r.created_at, r.last_seq, r.last_activity_at, "
    "(SELECT COUNT(DISTINCT c.member_key) FROM chat_connections c WHERE c.room_id = r.id)"
)


def schema(blob: str) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS chat_rooms (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            created_by TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            last_seq BIGINT NOT NULL DEFAULT 0,
            last_activity_at DOUBLE PRECISION
        )""",
        """CREATE TABLE IF NOT EXISTS chat_messages (
            room_id TEXT NOT NULL REFERENCES chat_rooms (id),
            seq BIGINT NOT NULL,
            id TEXT NOT NULL UNIQUE,
            kind SMALLINT NOT NULL,
            member_key TEXT NOT NULL,
            user_id TEXT NOT NULL,
            username TEXT NOT NULL,
            text TEXT NOT NULL,
            attachment_id TEXT,
            attachment_name TEXT,
            attachment_type TEXT,
            attachment_size BIGINT,
            sent_at DOUBLE PRECISION NOT NULL,
            client_message_id TEXT NOT NULL DEFAULT '',
            timed_out BOOLEAN NOT NULL DEFAULT FALSE,
            PRIMARY KEY (room_id, seq)
        )""",
        """CREATE UNIQUE INDEX IF NOT EXISTS chat_messages_retry
            ON chat_messages (room_id, member_key, client_message_id) WHERE client_message_id <> ''""",
        f"""CREATE TABLE IF NOT EXISTS chat_attachments (
            id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL REFERENCES chat_rooms (id),
            data {blob} NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS chat_connections (
            id TEXT PRIMARY KEY,
            room_id TEXT NOT NULL REFERENCES chat_rooms (id),
            member_key TEXT NOT NULL,
            user_id TEXT NOT NULL,
            username TEXT NOT NULL,
            replica TEXT NOT NULL,
            opened_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS chat_connections_member ON chat_connections (room_id, member_key)",
        "CREATE INDEX IF NOT EXISTS chat_connections_seen ON chat_connections (seen_at)",
        "CREATE INDEX IF NOT EXISTS chat_connections_replica ON chat_connections (replica)",
    ]


class Query:
    """One transaction's statements, written with `?` placeholders whatever the driver's style."""

    def __init__(self, conn: Any, cursor: Any, placeholder: str, outbox: Any) -> None:
        self.conn, self._cur, self._ph, self._outbox = conn, cursor, placeholder, outbox

    def run(self, sql: str, params: tuple = ()) -> Any:
        if self._ph != "?":
            sql = sql.replace("?", self._ph)
        self._cur.execute(sql, params)
        return self._cur

    def one(self, sql: str, params: tuple = ()) -> Any:
        return self.run(sql, params).fetchone()

    def all(self, sql: str, params: tuple = ()) -> list:
        return self.run(sql, params).fetchall()

    def publish(self, entry: Entry) -> None:
        self._outbox.add(self.conn, [envelope_for(entry)])


@timed_operations
class SqlChatStore(abc.ABC):
    """Everything but the connection: subclasses give `_read`, `_write` (fn(Query) in a thread,
    one transaction) and `lock_room` (the clause that locks a room row, '' where writers serialise)."""

    lock_room = ""
    blob = "BLOB"

    @abc.abstractmethod
    async def _read(self, fn: Callable[[Query], T]) -> T:
        """Provided by each backend's adapter."""

    @abc.abstractmethod
    async def _write(self, fn: Callable[[Query], T]) -> T:
        """Provided by each backend's adapter."""

    # -- rooms

    @staticmethod
    def _default_room(q: Query, now: float) -> None:
        q.run("INSERT INTO chat_rooms (id, title, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
              (DEFAULT_ROOM, "General", now))

    async def create_room(self, room_id: str, title: str, description: str, created_by: str,
                          now: float) -> Room:
        def create(q: Query) -> Room:
            inserted = q.run(
                "INSERT INTO chat_rooms (id, title, description, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (room_id, title, description, created_by, now)).rowcount
            if inserted != 1:
                raise AlreadyExists(f"room {room_id!r} already exists: pick another room_id")
            return Room(room_id, title, description, created_by, now, 0, None, 0)

        return await self._write(create)

    async def get_room(self, room_id: str) -> Room | None:
        row = await self._read(
            lambda q: q.one(f"SELECT {_ROOM} FROM chat_rooms r WHERE r.id = ?", (room_id,)))
        return _room(row) if row else None

    async def list_rooms(self, limit: int, offset: int) -> list[Room]:
        rows = await self._read(lambda q: q.all(
            f"SELECT {_ROOM} FROM chat_rooms r"
            " ORDER BY COALESCE(r.last_activity_at, r.created_at) DESC, r.id LIMIT ? OFFSET ?",
            (limit, offset)))
        return [_room(r) for r in rows]

    async def last_sequence(self, room_id: str) -> int | None:
        row = await self._read(lambda q: q.one("SELECT last_seq FROM chat_rooms WHERE id = ?", (room_id,)))
        return int(row[0]) if row else None

    # -- entries

    def _locked_room(self, q: Query, room_id: str) -> int:
        row = q.one(f"SELECT last_seq FROM chat_rooms WHERE id = ?{self.lock_room}", (room_id,))
        if row is None:
            raise NotFound.of("room", room_id)
        return int(row[0])

    @staticmethod
    def _add(q: Query, entry: Entry, member_key: str, last_seq: int) -> Entry:
        """Insert `entry` at last_seq + 1 (the room row is locked) and write its event to the outbox."""
        assert entry.sequence == last_seq + 1
        q.run("UPDATE chat_rooms SET last_seq = ?, last_activity_at = ? WHERE id = ?",
              (entry.sequence, entry.sent_at, entry.room_id))
        a = entry.attachment
        q.run(
            f"INSERT INTO chat_messages ({_ENTRY}, member_key)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.room_id, entry.sequence, entry.id, int(entry.kind), entry.user_id, entry.username,
             entry.text, a.id if a else None, a.filename if a else None, a.content_type if a else None,
             a.size_bytes if a else None, entry.sent_at, entry.client_message_id, entry.timed_out,
             member_key))
        q.publish(entry)
        return entry

    async def append(self, draft: Draft, now: float) -> tuple[Entry, bool]:
        key = draft.author.key

        def append(q: Query) -> tuple[Entry, bool]:
            last = self._locked_room(q, draft.room_id)
            if draft.client_message_id:
                row = q.one(f"SELECT {_ENTRY} FROM chat_messages WHERE room_id = ? AND member_key = ? "
                            "AND client_message_id = ?", (draft.room_id, key, draft.client_message_id))
                if row is not None:
                    return _entry(row), False
            info = None
            if draft.upload is not None:
                u = draft.upload
                info = AttachmentInfo(new_id(), u.filename, u.content_type, len(u.data))
                q.run("INSERT INTO chat_attachments (id, room_id, data) VALUES (?, ?, ?)",
                      (info.id, draft.room_id, self._binary(u.data)))
            entry = Entry(new_id(), draft.room_id, last + 1, Kind.MESSAGE, draft.author.user_id,
                          draft.author.username, draft.text, info, now, draft.client_message_id)
            return self._add(q, entry, key, last), True

        return await self._write(append)

    def _binary(self, data: bytes) -> Any:
        return data

    async def history(self, room_id: str, limit: int, before: int | None) -> list[Entry]:
        bound = before if before is not None else 2**62
        rows = await self._read(lambda q: q.all(
            f"SELECT {_ENTRY} FROM chat_messages WHERE room_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
            (room_id, bound, limit)))
        return [_entry(r) for r in rows]

    async def entries_after(self, room_id: str, after: int, upto: int | None, limit: int) -> list[Entry]:
        bound = upto if upto is not None else 2**62
        rows = await self._read(lambda q: q.all(
            f"SELECT {_ENTRY} FROM chat_messages WHERE room_id = ? AND seq > ? AND seq <= ?"
            " ORDER BY seq LIMIT ?",
            (room_id, after, bound, limit)))
        return [_entry(r) for r in rows]

    async def attachment(self, room_id: str, attachment_id: str) -> tuple[AttachmentInfo, bytes] | None:
        row = await self._read(lambda q: q.one(
            "SELECT m.attachment_id, m.attachment_name, m.attachment_type, m.attachment_size, a.data "
            "FROM chat_attachments a JOIN chat_messages m ON m.attachment_id = a.id "
            "WHERE a.id = ? AND a.room_id = ?", (attachment_id, room_id)))
        if row is None:
            return None
        return AttachmentInfo(row[0], row[1], row[2], int(row[3])), bytes(row[4])

    # -- presence

    async def connect(self, room_id: str, author: Author, connection_id: str, replica: str,
                      now: float) -> Entry | None:
        def connect(q: Query) -> Entry | None:
            last = self._locked_room(q, room_id)
            open_already = q.one("SELECT COUNT(*) FROM chat_connections WHERE room_id = ? AND member_key = ?",
                                 (room_id, author.key))[0]
            q.run("INSERT INTO chat_connections (id, room_id, member_key, user_id, username, replica,"
                  " opened_at, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                  (connection_id, room_id, author.key, author.user_id, author.username, replica, now, now))
            if open_already:
                return None
            join = Entry(new_id(), room_id, last + 1, Kind.JOIN, author.user_id, author.username, "", None,
                         now)
            return self._add(q, join, author.key, last)

        return await self._write(connect)

    async def disconnect(self, connection_id: str, timed_out: bool, now: float) -> Entry | None:
        def disconnect(q: Query) -> Entry | None:
            row = q.one("SELECT room_id, member_key, user_id, username FROM chat_connections WHERE id = ?",
                        (connection_id,))
            if row is None:
                return None
            room_id, key, user_id, username = row[0], row[1], row[2], row[3]
            last = self._locked_room(q, room_id)
            if q.run("DELETE FROM chat_connections WHERE id = ?", (connection_id,)).rowcount != 1:
                return None  # another replica's sweep got there first
            still = q.one("SELECT COUNT(*) FROM chat_connections WHERE room_id = ? AND member_key = ?",
                          (room_id, key))[0]
            if still:
                return None
            leave = Entry(new_id(), room_id, last + 1, Kind.LEAVE, user_id, username, "", None, now,
                          timed_out=timed_out)
            return self._add(q, leave, key, last)

        return await self._write(disconnect)

    async def touch(self, replica: str, now: float) -> None:
        await self._write(
            lambda q: q.run("UPDATE chat_connections SET seen_at = ? WHERE replica = ?", (now, replica)))

    async def stale_connections(self, seen_before: float) -> list[str]:
        rows = await self._read(lambda q: q.all(
            "SELECT id FROM chat_connections WHERE seen_at < ? ORDER BY seen_at LIMIT 1000", (seen_before,)))
        return [r[0] for r in rows]

    async def members(self, room_id: str) -> list[Member]:
        rows = await self._read(lambda q: q.all(
            "SELECT MAX(user_id), MAX(username), MIN(opened_at), COUNT(*) FROM chat_connections "
            "WHERE room_id = ? GROUP BY member_key ORDER BY MIN(opened_at), MAX(username)", (room_id,)))
        return [Member(r[0], r[1], float(r[2]), int(r[3])) for r in rows]


def _room(row: Any) -> Room:
    return Room(row[0], row[1], row[2], row[3], float(row[4]), int(row[5]),
                None if row[6] is None else float(row[6]), int(row[7]))


def _entry(row: Any) -> Entry:
    attachment = None if row[7] is None else AttachmentInfo(row[7], row[8], row[9], int(row[10]))
    return Entry(row[2], row[0], int(row[1]), Kind(int(row[3])), row[4], row[5], row[6], attachment,
                 float(row[11]), row[12], bool(row[13]))
