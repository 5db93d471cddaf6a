"""Chat values on the wire: domain entries to API protos, and to and from `chat.*` event payloads."""

from __future__ import annotations

from agora.chat.v1 import chat_pb2
from agora.events.v1 import chat_pb2 as events_pb2
from agora.events.v1.envelope_pb2 import Envelope
from google.protobuf.timestamp_pb2 import Timestamp

from services.chat.domain import AttachmentInfo, Entry, Kind, Member, Room
from services.kit.bus.envelopes import new_envelope, unpack

SOURCE = "chat"
POSTED, JOINED, LEFT = "chat.message.posted", "chat.member.joined", "chat.member.left"


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return ts.ToNanoseconds() / 1e9


def attachment_proto(info: AttachmentInfo, data: bytes = b"") -> chat_pb2.Attachment:
    return chat_pb2.Attachment(
        id=info.id, filename=info.filename, content_type=info.content_type, size_bytes=info.size_bytes, data=data
    )


def message_proto(entry: Entry) -> chat_pb2.Message:
    message = chat_pb2.Message(
        id=entry.id, room_id=entry.room_id, sequence=entry.sequence, kind=int(entry.kind), user_id=entry.user_id,
        username=entry.username, text=entry.text, sent_at=timestamp(entry.sent_at),
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
        created_at=timestamp(room.created_at), last_sequence=room.last_sequence, member_count=room.member_count,
    )
    if room.last_activity_at is not None:
        proto.last_activity_at.CopyFrom(timestamp(room.last_activity_at))
    return proto


def member_proto(member: Member) -> chat_pb2.Member:
    return chat_pb2.Member(
        user_id=member.user_id, username=member.username, joined_at=timestamp(member.joined_at),
        connections=member.connections,
    )


def envelope_for(entry: Entry) -> Envelope:
    """The event announcing a stored entry; key = room id, so one room's events stay in order."""
    if entry.kind == Kind.MESSAGE:
        payload = events_pb2.MessagePosted(
            room_id=entry.room_id, sequence=entry.sequence, message_id=entry.id, user_id=entry.user_id,
            username=entry.username, text=entry.text, client_message_id=entry.client_message_id,
            sent_at=timestamp(entry.sent_at),
        )
        if entry.attachment is not None:
            a = entry.attachment
            payload.attachment.CopyFrom(events_pb2.ChatAttachment(
                attachment_id=a.id, filename=a.filename, content_type=a.content_type, size_bytes=a.size_bytes))
        return new_envelope(POSTED, SOURCE, entry.room_id, payload)
    if entry.kind == Kind.JOIN:
        payload = events_pb2.MemberJoined(
            room_id=entry.room_id, sequence=entry.sequence, message_id=entry.id, user_id=entry.user_id,
            username=entry.username, joined_at=timestamp(entry.sent_at),
        )
        return new_envelope(JOINED, SOURCE, entry.room_id, payload)
    payload = events_pb2.MemberLeft(
        room_id=entry.room_id, sequence=entry.sequence, message_id=entry.id, user_id=entry.user_id,
        username=entry.username, timed_out=entry.timed_out, left_at=timestamp(entry.sent_at),
    )
    return new_envelope(LEFT, SOURCE, entry.room_id, payload)


def entry_from(envelope: Envelope) -> Entry | None:
    """The room entry an event announces; None for a `chat.*` type this version does not know."""
    if envelope.type == POSTED:
        p = unpack(envelope, events_pb2.MessagePosted)
        attachment = None
        if p.HasField("attachment"):
            a = p.attachment
            attachment = AttachmentInfo(a.attachment_id, a.filename, a.content_type, a.size_bytes)
        return Entry(p.message_id, p.room_id, p.sequence, Kind.MESSAGE, p.user_id, p.username, p.text,
                     attachment, seconds(p.sent_at), p.client_message_id)
    if envelope.type == JOINED:
        j = unpack(envelope, events_pb2.MemberJoined)
        return Entry(j.message_id, j.room_id, j.sequence, Kind.JOIN, j.user_id, j.username, "", None,
                     seconds(j.joined_at))
    if envelope.type == LEFT:
        left = unpack(envelope, events_pb2.MemberLeft)
        return Entry(left.message_id, left.room_id, left.sequence, Kind.LEAVE, left.user_id, left.username, "",
                     None, seconds(left.left_at), timed_out=left.timed_out)
    return None
