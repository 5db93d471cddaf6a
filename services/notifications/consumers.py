"""What notifications does when events arrive: decide who is told what (domain.intents), find their
addresses, queue one notification per channel and recipient. Idempotent by natural key: a
redelivered event inserts nothing new ((event_id, channel, recipient) is unique).

Addresses: an order's client from CustomerService (e-mail, and phone for SMS); an identity user
(auction seller or winner) from the contacts this consumer keeps from `identity.user.registered`.
"""

from __future__ import annotations

import logging

import grpc
from agora.customers.v1 import customers_pb2, customers_pb2_grpc
from agora.events.v1 import auctions_pb2, identity_pb2, orders_pb2, payments_pb2

from services.kit.bus import unpack
from services.kit.errors import Unavailable
from services.notifications import domain
from services.notifications.domain import Channel, Intent, Notification

log = logging.getLogger("agora.notifications.handlers")

GROUP = "notifications"
PATTERNS = ["orders.order.*", "payments.payment.*", "auctions.auction.closed", "identity.user.registered"]
PAYLOADS = {
    "orders.order.created": orders_pb2.OrderCreated, "orders.order.paid": orders_pb2.OrderPaid,
    "orders.order.failed": orders_pb2.OrderFailed, "orders.order.cancelled": orders_pb2.OrderCancelled,
    "payments.payment.succeeded": payments_pb2.PaymentSucceeded,
    "payments.payment.failed": payments_pb2.PaymentFailed,
    "payments.payment.refunded": payments_pb2.PaymentRefunded,
    "auctions.auction.closed": auctions_pb2.AuctionClosed,
}


class Directory:
    """Where to reach someone the events name."""

    def __init__(self, customers_channel, store, metadata=()) -> None:
        self.customers = customers_pb2_grpc.CustomerServiceStub(customers_channel)
        self.store = store
        self.metadata = tuple(metadata)

    async def addresses(self, audience: str) -> list[tuple[Channel, str]]:
        kind, _, key = audience.partition(":")
        if kind == "user":
            email = await self.store.contact(key)
            return [(Channel.EMAIL, email)] if email else []
        try:
            reply = await self.customers.GetClient(customers_pb2.GetClientRequest(client_id=key), timeout=5.0,
                                                   metadata=self.metadata)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return []
            raise Unavailable(f"CustomerService did not answer ({exc.code().name})") from None
        out = [(Channel.EMAIL, reply.client.email)] if reply.client.email else []
        if reply.client.phone:
            out.append((Channel.SMS, reply.client.phone))
        return out


class EventNotifier:
    def __init__(self, book, directory: Directory, *, wake=lambda: None, group: str = GROUP) -> None:
        self.book, self.directory, self.wake, self.group = book, directory, wake, group

    async def subscribe(self, bus):
        return await bus.subscribe(self.group, PATTERNS, self.handle)

    async def handle(self, envelope) -> None:
        if envelope.type == "identity.user.registered":
            user = unpack(envelope, identity_pb2.UserRegistered)
            if user.email:
                await self.book.store.remember_contact(user.user_id, user.email)
            return
        payload_type = PAYLOADS.get(envelope.type)
        if payload_type is None:
            return
        payload = unpack(envelope, payload_type)
        queued: list[Notification] = []
        for intent in domain.intents(envelope.type, payload):
            queued += await self._queue(envelope, intent)
        if queued and await self.book.create(queued):
            self.wake()

    async def _queue(self, envelope, intent: Intent) -> list[Notification]:
        addresses = await self.directory.addresses(intent.audience)
        if not addresses:
            log.info("%s %s: no address for %s; nobody to tell", envelope.type, envelope.key, intent.audience)
        at = domain.now()
        return [domain.queue(envelope.id, envelope.type, intent, channel, recipient, at)
                for channel, recipient in addresses]
