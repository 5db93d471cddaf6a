"""The NotificationService servicer: proto in, proto out; delivery in delivery.py, storage behind store.py."""

from __future__ import annotations

from agora.notifications.v1 import notifications_pb2 as pb
from agora.notifications.v1 import notifications_pb2_grpc

from services.kit import paging
from services.kit.auth import owner_or_internal
from services.kit.errors import InvalidArgument, NotFound, OutOfRange, PermissionDenied, enum_value
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.notifications import wire
from services.notifications.consumers import GROUP, Directory, EventNotifier
from services.notifications.delivery import FEED, Dispatcher, NotificationBook
from services.notifications.domain import Channel, DeliveryRules, NotificationFilter, Status
from services.notifications.senders import (
    EmailSender,
    LoggingSmsProvider,
    MaildirSender,
    SmsProvider,
    SmtpSettings,
)
from services.notifications.store import NotificationStore, open_store


def _enum(kind, value: int, name: str):
    return enum_value(kind, value, name) if value else None


class NotificationServicer(notifications_pb2_grpc.NotificationServiceServicer):
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
        return pb.GetNotificationResponse(notification=wire.notification(n))

    async def ListNotifications(self, request, context):
        who = owner_or_internal(context)
        size = paging.page_size(request.page_size)
        filter = NotificationFilter(recipient=request.recipient, order_id=request.order_id,
                                    channel=_enum(Channel, request.channel, "channel"),
                                    status=_enum(Status, request.status, "status"),
                                    user_id=who.user_id if who else "").normalised()
        cursor = paging.decode_token(request.page_token, *filter.parts(), kind=str) or ""
        found, after = await self.store.list(filter, cursor, size)
        token = paging.encode_token(after, *filter.parts()) if after else ""
        return pb.ListNotificationsResponse(notifications=[wire.notification(n) for n in found],
                                            next_page_token=token)

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
                yield pb.WatchNotificationsResponse(sequence=seq, notification=wire.notification(n))


def _api_key_metadata(key: str) -> tuple:
    return (("x-api-key", key),) if key else ()


async def build(runtime, *, store: NotificationStore | None = None, rules: DeliveryRules | None = None,
                smtp: SmtpSettings | None = None, sms: SmsProvider | None = None, schema: str | None = None,
                group: str | None = None, poll: float = 0.5) -> ServiceSpec:
    settings = runtime.settings
    store = store or open_store(settings, schema=schema or settings.notifications_schema)
    book = NotificationBook(store)
    if smtp is None and settings.mail_dir is not None:
        email = MaildirSender(settings.mail_dir, settings.smtp_from)  # the embedded run's own sink
    else:
        email = EmailSender(smtp or SmtpSettings.from_settings(settings))
    dispatcher = Dispatcher(book, email, sms or LoggingSmsProvider(),
                            rules or DeliveryRules.from_settings(settings), poll=poll)
    notifier = EventNotifier(book, Directory(runtime.channel("customers"), store,
                                             _api_key_metadata(settings.service_api_key)),
                             wake=dispatcher.wake, group=group or GROUP)
    servicer = NotificationServicer(book)
    bus = await runtime.bus()
    register = notifications_pb2_grpc.add_NotificationServiceServicer_to_server
    spec = ServiceSpec(
        domain=DOMAINS["notifications"],
        register=lambda server: register(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        # The book starts with the stores (its live log is seeded from the store's last change)
        # so that no watch sees the port answer before the log knows where it is.
        stores=[store, book], workers=[dispatcher], consumers=[notifier],
        bus=bus, sessions=runtime.sessions(),
    )
    spec.dispatcher = dispatcher  # tests reach the SMS provider and nudge delivery through it
    return spec
