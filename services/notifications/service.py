"""The NotificationService servicer: proto in, proto out; delivery in delivery.py, storage behind store.py."""

from __future__ import annotations

from typing import ClassVar

import grpc
from agora.notifications.v1 import notifications_pb2 as pb
from agora.notifications.v1 import notifications_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit import paging
from services.kit.auth import owner_or_internal
from services.kit.errors import DomainError, InvalidArgument, NotFound, PermissionDenied, enum_value
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.notifications.delivery import FEED, Dispatcher, NotificationBook
from services.notifications.domain import Channel, DeliveryRules, Notification, NotificationFilter, Status
from services.notifications.handlers import GROUP, Directory, EventNotifier
from services.notifications.senders import (
    EmailSender,
    LoggingSmsProvider,
    MaildirSender,
    SmsProvider,
    SmtpSettings,
)
from services.notifications.store import NotificationStore, open_store


class OutOfRange(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.OUT_OF_RANGE


def _ts(value) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def to_proto(n: Notification) -> pb.Notification:
    return pb.Notification(
        id=n.id, event_id=n.event_id, event_type=n.event_type, recipient=n.recipient, channel=int(n.channel),
        template=n.template, subject=n.subject, body=n.body, status=int(n.status), attempts=n.attempts,
        last_error=n.last_error, order_id=n.order_id, auction_id=n.auction_id, user_id=n.user_id,
        created_at=_ts(n.created_at), updated_at=_ts(n.updated_at), sent_at=_ts(n.sent_at),
        next_attempt_at=_ts(n.next_attempt_at))


def _enum(kind, value: int, name: str):
    return enum_value(kind, value, name) if value else None


class NotificationService(notifications_pb2_grpc.NotificationServiceServicer):
    def __init__(self, book: NotificationBook) -> None:
        self.book = book
        self.store = book.store

    async def GetNotification(self, request, context):
        who = owner_or_internal(context)
        if not request.notification_id.strip():
            raise InvalidArgument.field("notification_id", "required")
        n = await self.store.get(request.notification_id.strip())
        if n is None:
            raise NotFound.of("notification", request.notification_id)
        if who is not None and n.user_id != who.user_id:
            raise PermissionDenied("this notification belongs to another user")
        return pb.GetNotificationResponse(notification=to_proto(n))

    async def ListNotifications(self, request, context):
        who = owner_or_internal(context)
        size = paging.page_size(request.page_size)
        filter = NotificationFilter(recipient=request.recipient, order_id=request.order_id,
                                    channel=_enum(Channel, request.channel, "channel"),
                                    status=_enum(Status, request.status, "status"),
                                    user_id=who.user_id if who else "").normalised()
        cursor = paging.decode_token(request.page_token, *filter.parts(), kind=str) or ""
        found, after = await self.store.list(filter, cursor, size)
        return pb.ListNotificationsResponse(notifications=[to_proto(n) for n in found],
                                            next_page_token=paging.encode_token(after, *filter.parts()) if after else "")

    async def WatchNotifications(self, request, context):
        who = owner_or_internal(context)
        filter = NotificationFilter(recipient=request.recipient, order_id=request.order_id,
                                    user_id=who.user_id if who else "").normalised()
        last = max(self.book.log.last_seq(FEED), await self.store.last_sequence())
        if request.resume_from > last:
            raise OutOfRange(f"resume_from {request.resume_from} is beyond the latest sequence {last}")

        async def replay(after: int, upto: int):
            out = []
            while after < upto:
                page = await self.store.changes(after, upto, 500)
                if not page:
                    break
                out += page
                after = page[-1][0]
            return out

        async for seq, n in self.book.log.subscribe(FEED, request.resume_from, replay=replay,
                                                    start_at_tail=request.resume_from == 0):
            if filter.matches(n):
                yield pb.WatchNotificationsResponse(sequence=seq, notification=to_proto(n))


def _api_key_metadata(key: str) -> tuple:
    return (("x-api-key", key),) if key else ()


async def build(runtime, *, store: NotificationStore | None = None, rules: DeliveryRules | None = None,
                smtp: SmtpSettings | None = None, sms: SmsProvider | None = None, schema: str | None = None,
                group: str | None = None, poll: float = 0.5) -> ServiceSpec:
    settings = runtime.settings
    store = store or open_store(settings, schema=schema or settings.notifications_schema)
    await store.start()
    book = NotificationBook(store)
    await book.start()
    if smtp is None and settings.mail_dir is not None:
        email = MaildirSender(settings.mail_dir, settings.smtp_from)  # the embedded run's own sink
    else:
        email = EmailSender(smtp or SmtpSettings.from_settings(settings))
    dispatcher = Dispatcher(book, email,
                            sms or LoggingSmsProvider(), rules or DeliveryRules.from_settings(settings), poll=poll)
    notifier = EventNotifier(book, Directory(runtime.channel("customers"), store,
                                             _api_key_metadata(settings.service_api_key)),
                             wake=dispatcher.wake, group=group or GROUP)
    servicer = NotificationService(book)
    bus = await runtime.bus()
    subscriptions = []

    async def start() -> None:
        await dispatcher.start()
        subscriptions.append(await notifier.subscribe(bus))

    async def stop() -> None:
        for subscription in subscriptions:
            await subscription.cancel()
        await dispatcher.stop()
        await store.close()

    spec = ServiceSpec(
        domain=DOMAINS["notifications"],
        register=lambda server: notifications_pb2_grpc.add_NotificationServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        on_start=[start],
        on_stop=[stop],
        sessions=runtime.sessions(),
    )
    spec.dispatcher = dispatcher  # tests reach the SMS provider and nudge delivery through it
    return spec
