"""Outbox and inbox tables on SQLite and PostgreSQL: same transaction as the caller, claim and mark."""

from __future__ import annotations

import sqlite3

import psycopg2
import pytest
from google.protobuf.wrappers_pb2 import StringValue

from services.kit.bus.envelopes import new_envelope
from services.kit.bus.stores.postgres import PostgresInbox, PostgresOutbox
from services.kit.bus.stores.sqlite import SqliteInbox, SqliteOutbox
from tests.services.kit.bus.support import unique


def event(key: str):
    return new_envelope("tests.thing.done", "tests", key, StringValue(value=key))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """(outbox, inbox, connect) for one backend, with tables unique to this test."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        yield SqliteOutbox(), SqliteInbox(), lambda: sqlite3.connect(path)
        return
    url = request.getfixturevalue("postgres_url")
    suffix = unique("t").split("-")[0]
    outbox, inbox = PostgresOutbox(f"outbox_{suffix}"), PostgresInbox(f"inbox_{suffix}")
    opened: list = []

    def connect():
        opened.append(psycopg2.connect(url))
        return opened[-1]

    yield outbox, inbox, connect
    admin = connect()
    outbox.drop_schema(admin)
    inbox.drop_schema(admin)
    for conn in opened:
        conn.close()


def test_outbox_rows_commit_or_roll_back_with_the_callers_transaction(backend):
    outbox, _, connect = backend
    producer, relay = connect(), connect()
    outbox.create_schema(producer)
    kept = [event("a"), event("b")]
    with producer:
        outbox.add(producer, kept)
    try:
        with producer:
            outbox.add(producer, [event("lost")])
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass

    rows = outbox.claim(relay, 10)
    assert [type(r[1]) for r in rows] == [bytes, bytes]
    assert [r[1] for r in rows] == [e.SerializeToString() for e in kept]
    outbox.mark_sent(relay, [rows[0][0]])
    assert outbox.unsent(producer) == 1
    rows = outbox.claim(relay, 10)
    outbox.release(relay)
    assert [r[1] for r in rows] == [kept[1].SerializeToString()]
    assert outbox.prune(producer, -60) == 1  # sent rows older than "a minute from now"


def test_inbox_claims_an_event_once_per_group(backend):
    _, inbox, connect = backend
    conn = connect()
    inbox.create_schema(conn)
    with conn:
        assert inbox.claim(conn, "payments", "e1") is True
        assert inbox.claim(conn, "payments", "e1") is False
        assert inbox.claim(conn, "audit", "e1") is True  # another group applies it too
    try:
        with conn:
            assert inbox.claim(conn, "payments", "e2") is True
            raise RuntimeError("the effect failed")
    except RuntimeError:
        pass
    with conn:  # the rollback took the inbox mark with it: the redelivery applies
        assert inbox.claim(conn, "payments", "e2") is True


def test_postgres_relays_skip_rows_another_relay_holds(postgres_url):
    suffix = unique("t").split("-")[0]
    outbox = PostgresOutbox(f"outbox_{suffix}")
    first, second = psycopg2.connect(postgres_url), psycopg2.connect(postgres_url)
    try:
        outbox.create_schema(first)
        with first:
            outbox.add(first, [event(str(i)) for i in range(4)])
        mine = outbox.claim(first, 2)
        theirs = outbox.claim(second, 10)
        assert {s for s, _ in mine}.isdisjoint(s for s, _ in theirs)
        assert len(mine) + len(theirs) == 4
        outbox.release(first)
        outbox.release(second)
    finally:
        outbox.drop_schema(first)
        first.close()
        second.close()
