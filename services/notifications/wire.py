"""Notifications on the wire: the domain's Notification as the API's message (Timestamps from the kit)."""

from __future__ import annotations

from agora.notifications.v1 import notifications_pb2 as pb

from services.kit.wire import optional_timestamp
from services.notifications.domain import Notification


def notification(n: Notification) -> pb.Notification:
    return pb.Notification(
        id=n.id, event_id=n.event_id, event_type=n.event_type, recipient=n.recipient, channel=int(n.channel),
        template=n.template, subject=n.subject, body=n.body, status=int(n.status), attempts=n.attempts,
        last_error=n.last_error, order_id=n.order_id, auction_id=n.auction_id, user_id=n.user_id,
        created_at=optional_timestamp(n.created_at), updated_at=optional_timestamp(n.updated_at),
        sent_at=optional_timestamp(n.sent_at), next_attempt_at=optional_timestamp(n.next_attempt_at))
