"""`agora chat rooms|say|join`; `join` is an interactive session (type lines, see the room live)."""

from __future__ import annotations

import argparse
import getpass
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc

from agora.client.errors import AgoraError
from agora.commands.context import EXIT_OK, Invocation
from agora.commands.formats import as_json, when

ECHO_WAIT = 3.0  # seconds to wait, when leaving, for our last lines to come back


def register(sub: argparse._SubParsersAction, leaf) -> None:
    chat = sub.add_parser("chat", help="chat rooms: list, say, join interactively")
    verbs = chat.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = leaf(verbs, "rooms", "list rooms (or create one with --create TITLE)")
    p.add_argument("--create", metavar="TITLE", help="create a room with this title (needs a session)")
    p.add_argument("--id", dest="room_id", default="",
                   help="slug for --create (default: derived from the title)")
    p.add_argument("--description", default="")
    p.set_defaults(run=rooms)

    p = leaf(verbs, "say", "post one message to a room")
    p.add_argument("room_id")
    p.add_argument("text")
    p.add_argument("--username", help="display name when not signed in (default: your login name)")
    p.set_defaults(run=say)

    p = leaf(verbs, "join", "join a room: what you type is sent, the room scrolls by; Ctrl-D leaves")
    p.add_argument("room_id", nargs="?", default="general")
    p.add_argument("--username", help="display name when not signed in")
    p.add_argument("--history", type=int, default=20,
                   help="show this many earlier messages first (default 20)")
    p.set_defaults(run=join)


def _pb():
    from agora.chat.v1 import chat_pb2

    return chat_pb2


def _username(inv: Invocation) -> str:
    return inv.ns.username or ("" if inv.token else (inv.saved.get("user_name") or getpass.getuser()))


def rooms(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    if ns.create:
        inv.require_token()
        reply = inv.client.chat.CreateRoom(pb.CreateRoomRequest(room_id=ns.room_id, title=ns.create,
                                                                description=ns.description))
        if inv.json:
            inv.emit(as_json(reply))
        else:
            inv.console.print(f"room [bold]{reply.room.id}[/bold] created")
        return EXIT_OK
    listed = inv.client.chat.ListRooms(pb.ListRoomsRequest())
    if inv.json:
        inv.emit(as_json(listed))
    else:
        inv.table(f"{len(listed.rooms)} room(s)", ["id", "title", "members", "messages", "last activity"],
                  [[r.id, r.title, r.member_count, r.last_sequence,
                    when(r.last_activity_at)] for r in listed.rooms])
    return EXIT_OK


def say(inv: Invocation) -> int:
    reply = inv.client.chat.Send(_pb().SendRequest(room_id=inv.ns.room_id, text=inv.ns.text,
                                                   username=_username(inv)))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.console.print(f"#{reply.message.sequence} sent to {reply.message.room_id}")
    return EXIT_OK


def _line(message: Any) -> str:
    pb = _pb()
    stamp = when(message.sent_at)[11:]
    if message.kind == pb.MESSAGE_KIND_JOIN:
        return f"[dim]{stamp} → {message.username} joined[/dim]"
    if message.kind == pb.MESSAGE_KIND_LEAVE:
        return f"[dim]{stamp} ← {message.username} left[/dim]"
    attachment = f" [📎 {message.attachment.filename}]" if message.attachment.filename else ""
    from rich.markup import escape

    return f"[dim]{stamp}[/dim] [bold]{escape(message.username)}[/bold]: {escape(message.text)}{attachment}"


def join(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    if inv.ns.history:
        older = inv.client.chat.History(pb.HistoryRequest(room_id=ns.room_id, limit=ns.history)).messages
        for message in reversed(older):
            _show(inv, message)
    lines: queue.Queue[str | None] = queue.Queue()
    first = pb.ChatRequest(room_id=ns.room_id, username=_username(inv))
    sent, echoed, me = [0], [0], [""]

    def frames() -> Iterator[Any]:
        yield first
        while (text := lines.get()) is not None:
            sent[0] += 1
            yield pb.ChatRequest(text=text, client_message_id=str(uuid.uuid4()))

    stream = inv.client.chat.Chat(frames())

    def read_stdin() -> None:
        for raw in sys.stdin:
            text = raw.rstrip("\r\n")
            if text in ("/quit", "/exit"):
                break
            if text:
                lines.put(text)
        lines.put(None)
        # Leaving: give what we typed a moment to come back from the room, then hang up.
        deadline = time.monotonic() + ECHO_WAIT
        while time.monotonic() < deadline and not (me[0] and lines.empty() and echoed[0] >= sent[0]):
            time.sleep(0.05)
        stream.cancel()

    threading.Thread(target=read_stdin, name="chat-stdin", daemon=True).start()
    try:
        for frame in stream:
            kind = frame.WhichOneof("frame")
            if kind == "joined":
                j = frame.joined
                me[0] = j.you.username
                names = ", ".join(m.username for m in j.members)
                if inv.json:
                    inv.emit_line(as_json(frame))
                else:
                    inv.console.print(f"[bold]joined #{j.room.id}[/bold] as {j.you.username} · "
                                      f"present: {names} "
                                      "· type to talk, Ctrl-D to leave")
            elif kind == "message":
                _show(inv, frame.message, frame)
                if frame.message.client_message_id and frame.message.username == me[0]:
                    echoed[0] += 1
            elif kind == "rejected":
                echoed[0] += 1
                if inv.json:
                    inv.emit_line(as_json(frame))
                else:
                    inv.console.print(f"[red]not sent: {frame.rejected.message}[/red]")
    except AgoraError as error:
        if error.code != grpc.StatusCode.CANCELLED:  # cancelled = we hung up
            raise
    finally:
        lines.put(None)
        stream.cancel()
    return EXIT_OK


def _show(inv: Invocation, message: Any, frame: Any = None) -> None:
    if inv.json:
        inv.emit_line(as_json(frame if frame is not None else message))
    else:
        inv.console.print(_line(message))
