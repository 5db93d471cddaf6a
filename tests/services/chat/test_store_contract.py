"""One contract for every ChatStore adapter: SQLite (embedded) and PostgreSQL (real)."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.chat.domain import Author, Draft, Kind, Upload
from services.chat.stores.postgres import PostgresChatStore
from services.chat.stores.sqlite import SqliteChatStore
from services.kit.errors import AlreadyExists, NotFound
from tests.services.chat.support import unique

BOB, ANN = Author("", "bob"), Author("u-ann", "ann")


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request, tmp_path):
    if request.param == "sqlite":
        adapter = SqliteChatStore(tmp_path / "chat.sqlite3")
    else:
        adapter = PostgresChatStore(request.getfixturevalue("postgres_url"), schema=unique("chat_contract"))
    await adapter.start()
    await adapter.start()  # idempotent
    yield adapter
    if isinstance(adapter, PostgresChatStore):
        await adapter.drop()
    await adapter.close()


def draft(room: str, text: str, author: Author = BOB, cmid: str = "", upload: Upload | None = None) -> Draft:
    return Draft(room, author, text, upload, cmid)


async def test_rooms(store):
    general = await store.get_room("general")
    assert general is not None and general.last_sequence == 0
    room = await store.create_room("lobby", "Lobby", "chat here", "u-ann", time.time())
    assert room.id == "lobby" and room.created_by == "u-ann"
    with pytest.raises(AlreadyExists):
        await store.create_room("lobby", "Again", "", "u-ann", time.time())
    assert await store.get_room("nope") is None and await store.last_sequence("nope") is None
    await store.append(draft("general", "hi"), time.time() + 5)
    ids = [r.id for r in await store.list_rooms(10, 0)]
    assert ids[:2] == ["general", "lobby"]  # most recently active first
    assert [r.id for r in await store.list_rooms(1, 1)] == ["lobby"]


async def test_sequences_are_gapless_under_concurrent_writers(store):
    entries = await asyncio.gather(*(store.append(draft("general", f"m{i}"), time.time()) for i in range(40)))
    assert sorted(e.sequence for e, _ in entries) == list(range(1, 41))
    assert await store.last_sequence("general") == 40
    newest = await store.history("general", 10, None)
    assert [e.sequence for e in newest] == list(range(40, 30, -1))
    older = await store.history("general", 10, newest[-1].sequence)
    assert [e.sequence for e in older] == list(range(30, 20, -1))
    after = await store.entries_after("general", 35, None, 100)
    assert [e.sequence for e in after] == [36, 37, 38, 39, 40]
    assert [e.sequence for e in await store.entries_after("general", 10, 12, 100)] == [11, 12]
    with pytest.raises(NotFound):
        await store.append(draft("nope", "x"), time.time())


async def test_retry_with_client_message_id_returns_the_first(store):
    first, created = await store.append(draft("general", "once", cmid="c-1"), time.time())
    again, created_again = await store.append(draft("general", "once", cmid="c-1"), time.time())
    assert created and not created_again and again == first
    other, created_other = await store.append(draft("general", "once", author=ANN, cmid="c-1"), time.time())
    assert created_other and other.sequence == first.sequence + 1


async def test_attachments_are_stored_apart(store):
    upload = Upload("pic.png", "image/png", bytes(range(256)) * 10)
    entry, _ = await store.append(draft("general", "", upload=upload), time.time())
    assert entry.attachment.size_bytes == 2560 and entry.attachment.filename == "pic.png"
    [listed] = await store.history("general", 1, None)
    assert listed.attachment == entry.attachment
    info, data = await store.attachment("general", entry.attachment.id)
    assert info == entry.attachment and data == upload.data
    assert await store.attachment("lobby", entry.attachment.id) is None


async def test_presence_one_member_many_connections(store):
    now = time.time()
    join = await store.connect("general", ANN, "c1", "replica-a", now)
    assert join.kind == Kind.JOIN and join.username == "ann" and join.sequence == 1
    assert await store.connect("general", ANN, "c2", "replica-b", now) is None  # a second tab
    assert (await store.connect("general", BOB, "c3", "replica-a", now)).kind == Kind.JOIN
    members = await store.members("general")
    assert [(m.username, m.connections) for m in members] == [("ann", 2), ("bob", 1)]
    assert (await store.get_room("general")).member_count == 2
    assert await store.disconnect("c1", False, now) is None
    leave = await store.disconnect("c2", False, now)
    assert leave.kind == Kind.LEAVE and not leave.timed_out
    assert await store.disconnect("c2", False, now) is None  # already gone
    with pytest.raises(NotFound):
        await store.connect("nope", ANN, "c9", "replica-a", now)


async def test_connections_of_a_dead_replica_go_stale(store):
    await store.connect("general", ANN, "c1", "dead", time.time() - 100)
    await store.connect("general", BOB, "c2", "alive", time.time() - 100)
    await store.touch("alive", time.time())
    assert await store.stale_connections(time.time() - 45) == ["c1"]
    leave = await store.disconnect("c1", True, time.time())
    assert leave.kind == Kind.LEAVE and leave.timed_out


async def test_every_entry_is_in_the_outbox(store):
    from services.kit.bus.inprocess import InProcessBus
    from services.kit.bus.outbox import outbox_relay

    bus = InProcessBus()
    await bus.start()
    seen = []

    async def handler(envelope):
        seen.append((envelope.type, envelope.key))

    await bus.subscribe(unique("g").replace("_", "-"), ["chat.#"], handler)
    await store.append(draft("general", "hello"), time.time())
    await store.connect("general", ANN, "c1", "r", time.time())
    relay = outbox_relay(bus, store)
    try:
        assert await relay.relay_once() == 2
    finally:
        await relay.stop()
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert seen == [("chat.message.posted", "general"), ("chat.member.joined", "general")]
    await bus.close()
