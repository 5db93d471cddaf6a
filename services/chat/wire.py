"""Chat values on the wire: domain entries to API protos (the `chat.*` events are in events.py)."""

from __future__ import annotations

from agora.chat.v1 import chat_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.chat.domain import AttachmentInfo, Entry, Member, Room, Upload
from services.kit.errors import DomainError


# Chat keeps times as float epoch seconds (its stores' DOUBLE PRECISION columns), not datetimes, so it
# converts them itself: kit.wire.timestamp would round them to microseconds and change the JSON.
def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def attachment_proto(info: AttachmentInfo, data: bytes = b"") -> chat_pb2.Attachment:
    return chat_pb2.Attachment(
        id=info.id, filename=info.filename, content_type=info.content_type, size_bytes=info.size_bytes,
        data=data,
    )


def upload_of(request) -> Upload | None:
    """A SendRequest's or ChatRequest's attachment, None when it has none."""
    if not request.HasField("attachment"):
        return None
    a = request.attachment
    return Upload(a.filename, a.content_type, a.data)


def message_proto(entry: Entry) -> chat_pb2.Message:
    message = chat_pb2.Message(
        id=entry.id, room_id=entry.room_id, sequence=entry.sequence, kind=int(entry.kind),
        user_id=entry.user_id, username=entry.username, text=entry.text, sent_at=timestamp(entry.sent_at),
        client_message_id=entry.client_message_id,
    )
    if entry.attachment is not None:
        message.attachment.CopyFrom(attachment_proto(entry.attachment))
    return message


# The chat seed's wire (its models.Message): joins and leaves are messages from "Sistema".
SEED_SYSTEM = "Sistema"
SEED_TYPES = {chat_pb2.MESSAGE_KIND_MESSAGE: "message", chat_pb2.MESSAGE_KIND_JOIN: "join",
              chat_pb2.MESSAGE_KIND_LEAVE: "leave"}


def seed_message(message: chat_pb2.Message, online: int | None = None) -> chat_pb2.SeedMessage:
    """A room entry as the seed shows it; `online` is the member count live frames carry."""
    out = chat_pb2.SeedMessage(id=message.id, timestamp=message.sent_at, type=SEED_TYPES[message.kind])
    if message.kind == chat_pb2.MESSAGE_KIND_JOIN:
        out.username, out.content = SEED_SYSTEM, f"{message.username} entrou no chat"
    elif message.kind == chat_pb2.MESSAGE_KIND_LEAVE:
        out.username, out.content = SEED_SYSTEM, f"{message.username} saiu do chat"
    else:
        out.username, out.content = message.username, message.text
    if online is not None:
        out.online_count = online
    return out


def seed_count(online: int) -> chat_pb2.SeedMessage:
    return chat_pb2.SeedMessage(type="count", online_count=online)


def room_proto(room: Room) -> chat_pb2.Room:
    proto = chat_pb2.Room(
        id=room.id, title=room.title, description=room.description, created_by=room.created_by,
        created_at=timestamp(room.created_at), last_sequence=room.last_sequence,
        member_count=room.member_count,
    )
    if room.last_activity_at is not None:
        proto.last_activity_at.CopyFrom(timestamp(room.last_activity_at))
    return proto


def member_proto(member: Member) -> chat_pb2.Member:
    return chat_pb2.Member(
        user_id=member.user_id, username=member.username, joined_at=timestamp(member.joined_at),
        connections=member.connections,
    )


def joined(room: Room, members: list[Member], you: Member | None) -> chat_pb2.Joined:
    """The Chat stream's first frame: the room, who is in it, and the caller's own member."""
    out = chat_pb2.Joined(room=room_proto(room), members=[member_proto(m) for m in members])
    if you is not None:
        out.you.CopyFrom(member_proto(you))
    return out


def rejected(frame: chat_pb2.ChatRequest, exc: DomainError) -> chat_pb2.Rejected:
    """A Chat frame the domain refused (the stream stays open)."""
    return chat_pb2.Rejected(client_message_id=frame.client_message_id[:128], code=exc.code.value[0],
                             message=exc.message)

