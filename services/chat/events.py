"""Chat's event envelopes: a stored room entry as its `chat.*` event, and back (RoomFanout reads them)."""

from __future__ import annotations

from agora.events.v1 import chat_pb2 as events_pb2
from agora.events.v1.envelope_pb2 import Envelope

from services.chat.domain import AttachmentInfo, Entry, Kind
from services.chat.wire import seconds, timestamp
from services.kit.bus.envelopes import new_envelope, unpack

SOURCE = "chat"
POSTED, JOINED, LEFT = "chat.message.posted", "chat.member.joined", "chat.member.left"


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
                attachment_id=a.id, filename=a.filename, content_type=a.content_type,
                size_bytes=a.size_bytes))
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
        return Entry(left.message_id, left.room_id, left.sequence, Kind.LEAVE, left.user_id, left.username,
                     "", None, seconds(left.left_at), timed_out=left.timed_out)
    return None
