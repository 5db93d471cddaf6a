"""Chat end to end over real gRPC, on the embedded and the real backends."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from agora.chat.v1 import chat_pb2, chat_pb2_grpc
from grpc_status import rpc_status

from services.kit.config import Settings
from services.kit.errors import field_violations
from tests.services.chat.support import WAIT, ChatClient, chat_server, new_room

MESSAGE, JOIN, LEAVE = chat_pb2.MESSAGE_KIND_MESSAGE, chat_pb2.MESSAGE_KIND_JOIN, chat_pb2.MESSAGE_KIND_LEAVE
ALICE = [("authorization", "Bearer alice-token")]


async def fails(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert exc.value.code() == code, exc.value.details()
    return exc.value


def violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    return field_violations(status.details) if status else {}


async def test_members_and_watchers_see_the_same_entries_in_the_same_order(stub):
    room = await new_room(stub)
    watch = stub.WatchRoom(chat_pb2.WatchRoomRequest(room_id=room))
    ann = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="ann"))
    bob = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="bob"))
    try:
        assert (await ann.next()).joined.room.id == room
        assert (await bob.next()).HasField("joined")
        for i in range(5):
            ann.send(f"ann {i}")
            bob.send(f"bob {i}")
        await stub.Send(chat_pb2.SendRequest(room_id=room, username="carol", text="carol says hi"),
                        timeout=WAIT)
        seen_ann = await ann.messages(11)
        seen_bob = await bob.messages(11)
        assert [m.id for m in seen_ann] == [m.id for m in seen_bob]
        assert sorted(m.text for m in seen_ann) == sorted(
            [f"ann {i}" for i in range(5)] + [f"bob {i}" for i in range(5)] + ["carol says hi"])
        seqs = [m.sequence for m in seen_ann]
        assert seqs == sorted(seqs)
        watched = []
        while len(watched) < 11:
            reply = await asyncio.wait_for(watch.read(), WAIT)
            assert reply.sequence == reply.message.sequence
            if reply.message.kind == MESSAGE:
                watched.append(reply.message.id)
        assert watched == [m.id for m in seen_ann]
        history = await stub.History(chat_pb2.HistoryRequest(room_id=room, limit=500), timeout=WAIT)
        assert [m.id for m in history.messages if m.kind == MESSAGE][::-1] == watched
        all_seqs = [m.sequence for m in history.messages]
        assert all_seqs == list(range(len(all_seqs), 0, -1))  # gapless, newest first
    finally:
        ann.close(), bob.close(), watch.cancel()


async def test_presence_join_once_per_member_and_leave_on_last_tab(stub):
    room = await new_room(stub)
    observer = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="observer"))
    await observer.next()
    await observer.messages(1, kinds=(JOIN,))  # its own join
    tab1 = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="dana"))
    await tab1.next()
    [joined] = await observer.messages(1, kinds=(JOIN, LEAVE))
    assert (joined.kind, joined.username) == (JOIN, "dana")
    tab2 = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="dana"))
    first = await tab2.next()
    assert {m.username: m.connections for m in first.joined.members} == {"observer": 1, "dana": 2}
    assert first.joined.you.username == "dana" and first.joined.you.connections == 2
    got = await stub.GetRoom(chat_pb2.GetRoomRequest(room_id=room), timeout=WAIT)
    assert got.room.member_count == 2
    tab1.close()
    tab2.send("still here")  # the second tab keeps dana present: no LEAVE before this message
    [entry] = await observer.messages(1, kinds=(JOIN, LEAVE, MESSAGE))
    assert (entry.kind, entry.text) == (MESSAGE, "still here")
    tab2.close()
    [left] = await observer.messages(1, kinds=(JOIN, LEAVE))
    assert (left.kind, left.username) == (LEAVE, "dana")
    got = await stub.GetRoom(chat_pb2.GetRoomRequest(room_id=room), timeout=WAIT)
    assert [m.username for m in got.members] == ["observer"]
    observer.close()


async def test_disconnect_and_resume_gets_every_missed_entry_exactly_once(stub):
    room = await new_room(stub)
    eve = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="eve"))
    await eve.next()
    await stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", text="before"), timeout=WAIT)
    [before] = await eve.messages(1)
    eve.close()
    for i in range(30):
        await stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", text=f"missed {i}"), timeout=WAIT)
    again = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="eve", resume_from=before.sequence))
    hello = await again.next()
    assert hello.sequence == before.sequence
    again.send("back")
    entries = []
    while not entries or entries[-1].text != "back":
        entries.append((await again.next()).message)
    seqs = [m.sequence for m in entries]
    assert seqs == list(range(before.sequence + 1, before.sequence + 1 + len(seqs)))  # no gap, no duplicate
    texts = [m.text for m in entries if m.kind == MESSAGE]
    assert texts == [f"missed {i}" for i in range(30)] + ["back"]
    # Her own LEAVE (the first connection closed) and re-JOIN are in the log too, once each.
    assert [m.kind for m in entries if m.kind != MESSAGE].count(JOIN) == 1
    again.close()
    await fails(stub.WatchRoom(chat_pb2.WatchRoomRequest(room_id=room, resume_from=10_000)).read(),
                grpc.StatusCode.OUT_OF_RANGE)


async def test_bad_input_gets_a_clear_status(stub):
    room = await new_room(stub)
    empty = await fails(stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", text="  ")),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert "text" in violations(empty)
    long = await fails(stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", text="x" * 4097)),
                       grpc.StatusCode.INVALID_ARGUMENT)
    assert "4096" in violations(long)["text"]
    bad_type = chat_pb2.AttachmentUpload(filename="x.html", content_type="text/html", data=b"<script>")
    error = await fails(stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", attachment=bad_type)),
                        grpc.StatusCode.INVALID_ARGUMENT)
    assert "attachment.content_type" in violations(error)
    await fails(stub.Send(chat_pb2.SendRequest(room_id="no-such-room", username="bob", text="hi")),
                grpc.StatusCode.NOT_FOUND)
    await fails(stub.Send(chat_pb2.SendRequest(room_id=room, text="who am i")),
                grpc.StatusCode.INVALID_ARGUMENT)
    await fails(stub.History(chat_pb2.HistoryRequest(room_id="no-such-room")), grpc.StatusCode.NOT_FOUND)
    await fails(stub.History(chat_pb2.HistoryRequest(room_id=room, page_token="forged")),
                grpc.StatusCode.INVALID_ARGUMENT)
    await fails(stub.CreateRoom(chat_pb2.CreateRoomRequest(title="anonymous")),
                grpc.StatusCode.UNAUTHENTICATED)
    await fails(stub.Send(chat_pb2.SendRequest(room_id=room, text="x"),
                          metadata=[("authorization", "Bearer nope")]),
                grpc.StatusCode.UNAUTHENTICATED)
    # A refused frame in Chat gets `rejected` and the stream stays open.
    bob = ChatClient(stub, chat_pb2.ChatRequest(room_id=room, username="bob"))
    await bob.next()
    bob.send("y" * 5000, client_message_id="too-long")
    bob.send("fine")
    replies = [await bob.next() for _ in range(3)]
    rejected = next(r.rejected for r in replies if r.HasField("rejected"))
    assert (rejected.client_message_id == "too-long"
            and rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0])
    assert "fine" in [r.message.text for r in replies if r.HasField("message")]
    bob.send(room_id="general", text="wrong room")
    with pytest.raises(grpc.aio.AioRpcError) as wrong_room:
        for _ in range(5):
            await bob.next()
    assert wrong_room.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    anonymous = ChatClient(stub, chat_pb2.ChatRequest(room_id=room))
    with pytest.raises(grpc.aio.AioRpcError) as no_name:
        await anonymous.next()
    assert no_name.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "username" in no_name.value.details()


async def test_signed_in_author_attachments_and_history_pages(stub):
    room = await new_room(stub)
    sent = await stub.Send(chat_pb2.SendRequest(room_id=room, username="ignored", text="as alice"),
                           metadata=ALICE, timeout=WAIT)
    assert (sent.message.user_id, sent.message.username) == ("u-alice", "alice")
    again = await stub.Send(chat_pb2.SendRequest(room_id=room, text="as alice", client_message_id="k1"),
                            metadata=ALICE, timeout=WAIT)
    retry = await stub.Send(chat_pb2.SendRequest(room_id=room, text="as alice", client_message_id="k1"),
                            metadata=ALICE, timeout=WAIT)
    assert retry.message == again.message
    pdf = chat_pb2.AttachmentUpload(filename="doc.pdf", content_type="application/pdf",
                                    data=b"%PDF-1.4 " * 100)
    with_file = await stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", attachment=pdf),
                                timeout=WAIT)
    assert with_file.message.attachment.size_bytes == 900 and not with_file.message.attachment.data
    got = await stub.GetAttachment(chat_pb2.GetAttachmentRequest(
        room_id=room, attachment_id=with_file.message.attachment.id), timeout=WAIT)
    assert got.attachment.data == pdf.data
    await fails(stub.GetAttachment(chat_pb2.GetAttachmentRequest(room_id=room, attachment_id="nope")),
                grpc.StatusCode.NOT_FOUND)
    for i in range(5):
        await stub.Send(chat_pb2.SendRequest(room_id=room, username="bob", text=f"p{i}"), timeout=WAIT)
    seen, token = [], ""
    while True:
        page = await stub.History(chat_pb2.HistoryRequest(room_id=room, limit=3, page_token=token),
                                  timeout=WAIT)
        seen += [m.sequence for m in page.messages]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(8, 0, -1))
    rooms = await stub.ListRooms(chat_pb2.ListRoomsRequest(page_size=1), timeout=WAIT)
    assert rooms.rooms[0].id == room and rooms.next_page_token


async def test_slow_consumer_is_ended_with_resource_exhausted_and_can_resume(tmp_path):
    async with chat_server(Settings(data_dir=tmp_path), feed_capacity=8) as server:
        # No BDP probing: the client's receive window stays small, so a client that stops reading
        # really stops the server's writes.
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(server.address, options=options) as channel:
            stub = chat_pb2_grpc.ChatServiceStub(channel)
            room = await new_room(stub)
            await stub.Send(chat_pb2.SendRequest(room_id=room, username="fast", text="first"), timeout=WAIT)
            lazy = stub.WatchRoom(chat_pb2.WatchRoomRequest(room_id=room, resume_from=1))
            await stub.Send(chat_pb2.SendRequest(room_id=room, username="fast", text="second"), timeout=WAIT)
            assert (await asyncio.wait_for(lazy.read(), WAIT)).sequence == 2  # subscribed
            text = "z" * 4000
            for i in range(3, 121):
                await stub.Send(chat_pb2.SendRequest(room_id=room, username="fast", text=f"{i} {text}"),
                                timeout=WAIT)
            last = 2
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                while True:
                    reply = await asyncio.wait_for(lazy.read(), WAIT)
                    assert reply is not grpc.aio.EOF
                    last = reply.sequence
            assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert f"resume_from={last}" in exc.value.details() or "resume" in exc.value.details()
            resumed = stub.WatchRoom(chat_pb2.WatchRoomRequest(room_id=room, resume_from=last))
            rest = [(await asyncio.wait_for(resumed.read(), WAIT)).sequence for _ in range(120 - last)]
            assert rest == list(range(last + 1, 121))
            resumed.cancel()


async def test_resume_after_a_restart_replays_from_the_store(tmp_path):
    settings = Settings(data_dir=tmp_path)
    async with chat_server(settings) as server, server.channel() as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        for i in range(5):
            await stub.Send(chat_pb2.SendRequest(username="bob", text=f"old {i}"), timeout=WAIT)
    async with chat_server(settings) as server, server.channel() as channel:
        stub = chat_pb2_grpc.ChatServiceStub(channel)
        watch = stub.WatchRoom(chat_pb2.WatchRoomRequest(resume_from=2))
        await stub.Send(chat_pb2.SendRequest(username="bob", text="new"), timeout=WAIT)
        texts = [(await asyncio.wait_for(watch.read(), WAIT)).message.text for _ in range(4)]
        assert texts == ["old 2", "old 3", "old 4", "new"]
        watch.cancel()
