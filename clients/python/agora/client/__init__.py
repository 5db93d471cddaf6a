"""The typed Agora client: one attribute per domain, sensible defaults, one exception type.

    from agora.client import Agora
    from agora.polls.v1 import polls_pb2

    with Agora("localhost", token=token) as agora:
        poll = agora.polls.GetPoll(polls_pb2.GetPollRequest(poll_id=poll_id)).poll
        for frame in agora.watch_auction(auction_id):   # survives reconnects, exactly once
            ...

Every attribute is the domain's generated stub (typed by the mypy-protobuf `.pyi`) on a
channel that retries idempotent calls on UNAVAILABLE (gRPC service config), keeps the
connection alive, and sends the session token. Unary calls get a default deadline; a failed call
raises `AgoraError` with the status code and decoded `google.rpc` details.
`agora.client.aio.Agora` is the asyncio flavour.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import grpc

from agora.client.calls import CallDefaults, ServiceClient
from agora.client.errors import AgoraError
from agora.client.mesh import DOMAINS, channel_options, resolve_targets
from agora.client.resume import OnRetry, resume

if TYPE_CHECKING:
    from agora.auctions.v1 import auctions_pb2, auctions_pb2_grpc
    from agora.audit.v1 import audit_pb2, audit_pb2_grpc
    from agora.catalog.v1 import catalog_pb2_grpc
    from agora.chat.v1 import chat_pb2, chat_pb2_grpc
    from agora.customers.v1 import customers_pb2_grpc
    from agora.identity.v1 import identity_pb2_grpc
    from agora.notifications.v1 import notifications_pb2_grpc
    from agora.orders.v1 import orders_pb2, orders_pb2_grpc
    from agora.payments.v1 import payments_pb2_grpc
    from agora.polls.v1 import polls_pb2, polls_pb2_grpc

__all__ = ["Agora", "AgoraError", "DEFAULT_TIMEOUT", "resume"]

DEFAULT_TIMEOUT = 10.0


class Agora:
    """A connection to the mesh (sync). Channels open lazily, one per domain used."""

    def __init__(self, target: str | None = None, *, token: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, port_offset: int | None = None,
                 targets: Mapping[str, str] | None = None) -> None:
        """`target`: a host (each domain on its default port + AGORA_PORT_OFFSET) or one
        "host:port" for every service; default from the environment (see `resolve_targets`).
        `targets` overrides single domains. `timeout`: default deadline of unary calls, seconds."""
        self.targets = {**resolve_targets(target, port_offset=port_offset), **(targets or {})}
        self._defaults = CallDefaults(token, timeout)
        self._channels: dict[str, grpc.Channel] = {}
        self._services: dict[str, ServiceClient] = {}

    @property
    def token(self) -> str | None:
        return self._defaults.token

    @token.setter
    def token(self, value: str | None) -> None:
        """Set after Login: every later call carries it."""
        self._defaults.token = value

    def channel(self, domain: str) -> grpc.Channel:
        if domain not in self._channels:
            self._channels[domain] = grpc.insecure_channel(self.targets[domain],
                                                           options=channel_options(domain))
        return self._channels[domain]

    def service(self, domain: str) -> Any:
        """The wrapped stub of `domain` (what the typed attributes below return)."""
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; one of: {', '.join(DOMAINS)}")
        if domain not in self._services:
            self._services[domain] = ServiceClient(domain, self.channel(domain), self._defaults)
        return self._services[domain]

    @property
    def identity(self) -> identity_pb2_grpc.IdentityServiceStub:
        return cast("identity_pb2_grpc.IdentityServiceStub", self.service("identity"))

    @property
    def polls(self) -> polls_pb2_grpc.PollServiceStub:
        return cast("polls_pb2_grpc.PollServiceStub", self.service("polls"))

    @property
    def auctions(self) -> auctions_pb2_grpc.AuctionServiceStub:
        return cast("auctions_pb2_grpc.AuctionServiceStub", self.service("auctions"))

    @property
    def chat(self) -> chat_pb2_grpc.ChatServiceStub:
        return cast("chat_pb2_grpc.ChatServiceStub", self.service("chat"))

    @property
    def customers(self) -> customers_pb2_grpc.CustomerServiceStub:
        return cast("customers_pb2_grpc.CustomerServiceStub", self.service("customers"))

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceStub:
        return cast("catalog_pb2_grpc.CatalogServiceStub", self.service("catalog"))

    @property
    def orders(self) -> orders_pb2_grpc.OrderServiceStub:
        return cast("orders_pb2_grpc.OrderServiceStub", self.service("orders"))

    @property
    def payments(self) -> payments_pb2_grpc.PaymentServiceStub:
        return cast("payments_pb2_grpc.PaymentServiceStub", self.service("payments"))

    @property
    def notifications(self) -> notifications_pb2_grpc.NotificationServiceStub:
        return cast("notifications_pb2_grpc.NotificationServiceStub", self.service("notifications"))

    @property
    def audit(self) -> audit_pb2_grpc.AuditServiceStub:
        return cast("audit_pb2_grpc.AuditServiceStub", self.service("audit"))

    # -- live streams that resume after a dropped connection

    def watch_auction(self, auction_id: str, *, resume_from: int = 0, reconnect_for: float = 60.0,
                      on_retry: OnRetry | None = None) -> Iterator[auctions_pb2.WatchAuctionResponse]:
        from agora.auctions.v1 import auctions_pb2

        request = auctions_pb2.WatchAuctionRequest(auction_id=auction_id, resume_from=resume_from)
        return resume(self.auctions.WatchAuction, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_order(self, order_id: str, *, resume_from: int = 0, reconnect_for: float = 60.0,
                    on_retry: OnRetry | None = None) -> Iterator[orders_pb2.WatchOrderResponse]:
        from agora.orders.v1 import orders_pb2

        request = orders_pb2.WatchOrderRequest(order_id=order_id, resume_from=resume_from)
        return resume(self.orders.WatchOrder, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_results(self, poll_id: str, *, reconnect_for: float = 60.0,
                      on_retry: OnRetry | None = None) -> Iterator[polls_pb2.WatchResultsResponse]:
        from agora.polls.v1 import polls_pb2

        request = polls_pb2.WatchResultsRequest(poll_id=poll_id)
        return resume(self.polls.WatchResults, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_events(self, type_pattern: str = "", *, key: str = "", resume_from: int = 0,
                     reconnect_for: float = 60.0, on_retry: OnRetry | None = None,
                     ) -> Iterator[audit_pb2.WatchEventsResponse]:
        from agora.audit.v1 import audit_pb2

        request = audit_pb2.WatchEventsRequest(type_pattern=type_pattern, key=key, resume_from=resume_from)
        return resume(self.audit.WatchEvents, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_room(self, room_id: str = "general", *, resume_from: int = 0, reconnect_for: float = 60.0,
                   on_retry: OnRetry | None = None) -> Iterator[chat_pb2.WatchRoomResponse]:
        from agora.chat.v1 import chat_pb2

        request = chat_pb2.WatchRoomRequest(room_id=room_id, resume_from=resume_from)
        return resume(self.chat.WatchRoom, request, reconnect_for=reconnect_for, on_retry=on_retry)

    # -- lifetime

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._services.clear()

    def __enter__(self) -> Agora:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
