"""The asyncio Agora client: `agora.client.Agora`'s twin on grpc.aio channels.

    async with Agora("localhost", token=token) as agora:
        reply = await agora.polls.GetPoll(polls_pb2.GetPollRequest(poll_id=poll_id))
        async for frame in agora.watch_order(order_id):
            ...
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from agora.api.v1 import options_pb2
from agora.client.batching import RequestBatcher
from agora.client.calls import CallDefaults, with_idempotency_key
from agora.client.errors import AgoraError
from agora.client.mesh import (
    DOMAINS,
    channel_options,
    idempotency_field,
    resolve_targets,
    service_descriptor,
    stub_module,
)
from agora.client.resume import OnRetry, aresume

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

__all__ = ["Agora", "AgoraError", "aresume"]

DEFAULT_TIMEOUT = 10.0


class UnaryMethod:
    def __init__(self, inner: Any, defaults: CallDefaults, key_field: str | None) -> None:
        self._inner, self._defaults, self._key_field = inner, defaults, key_field

    async def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                       **kwargs: Any) -> Any:
        request = with_idempotency_key(request, self._key_field)
        try:
            return await self._inner(request,
                                     timeout=timeout if timeout is not None else self._defaults.timeout,
                                      metadata=self._defaults.metadata(metadata), **kwargs)
        except grpc.aio.AioRpcError as error:
            raise AgoraError.from_rpc_error(error) from None


class ResponseStream:
    """An aio streaming call whose failures arrive as AgoraError (iterate, `read()`, `write()`)."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._iterator: Any = None

    def __aiter__(self) -> ResponseStream:
        return self

    async def __anext__(self) -> Any:
        if self._iterator is None:
            self._iterator = self._call.__aiter__()
        try:
            return await self._iterator.__anext__()
        except grpc.aio.AioRpcError as error:
            raise AgoraError.from_rpc_error(error) from None

    async def read(self) -> Any:
        try:
            return await self._call.read()
        except grpc.aio.AioRpcError as error:
            raise AgoraError.from_rpc_error(error) from None

    async def write(self, request: Any) -> None:
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as error:
            raise AgoraError.from_rpc_error(error) from None

    async def done_writing(self) -> None:
        await self._call.done_writing()

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class StreamingMethod:
    def __init__(self, inner: Any, defaults: CallDefaults) -> None:
        self._inner, self._defaults = inner, defaults

    def __call__(self, request: Any = None, timeout: float | None = None, metadata: Any = None,
                 **kwargs: Any) -> ResponseStream:
        return ResponseStream(self._inner(request, timeout=timeout,
                                          metadata=self._defaults.metadata(metadata), **kwargs))


class ServiceClient:
    def __init__(self, domain: str, channel: grpc.aio.Channel, defaults: CallDefaults) -> None:
        stub = getattr(stub_module(domain), f"{DOMAINS[domain].service}Stub")(channel)
        self.domain = domain
        for method in service_descriptor(domain).methods:
            inner = getattr(stub, method.name)
            wrapped: Any
            if method.server_streaming:
                wrapped = StreamingMethod(inner, defaults)
            else:
                wrapped = UnaryMethod(inner, defaults,
                                      None if method.client_streaming else idempotency_field(method))
            setattr(self, method.name, wrapped)

    def __repr__(self) -> str:
        return f"<agora {self.domain} asyncio client>"


class Agora:
    """A connection to the mesh (asyncio). Create it inside the event loop that uses it."""

    def __init__(self, target: str | None = None, *, token: str | None = None,
                 timeout: float | None = DEFAULT_TIMEOUT, port_offset: int | None = None,
                 targets: Mapping[str, str] | None = None) -> None:
        self.targets = {**resolve_targets(target, port_offset=port_offset), **(targets or {})}
        self._defaults = CallDefaults(token, timeout)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._services: dict[str, ServiceClient] = {}
        self._batchers: dict[tuple[str, str], RequestBatcher] = {}

    @property
    def token(self) -> str | None:
        return self._defaults.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._defaults.token = value

    def channel(self, domain: str) -> grpc.aio.Channel:
        if domain not in self._channels:
            self._channels[domain] = grpc.aio.insecure_channel(self.targets[domain],
                                                               options=channel_options(domain))
        return self._channels[domain]

    def service(self, domain: str) -> Any:
        if domain not in DOMAINS:
            raise ValueError(f"unknown domain {domain!r}; one of: {', '.join(DOMAINS)}")
        if domain not in self._services:
            self._services[domain] = ServiceClient(domain, self.channel(domain), self._defaults)
        return self._services[domain]

    def batched(self, domain: str, method: str) -> RequestBatcher:
        """`method` of `domain`, batched as its (agora.api.v1.batching) declares: await
        `batcher(request)` as the method itself; concurrent calls share one batch call
        (e.g. `agora.batched("polls", "CastVote")`). ValueError when the method declares none."""
        known = self._batchers.get((domain, method))
        if known is not None:
            return known
        self.service(domain)  # checks the domain
        service = service_descriptor(domain)
        single = service.methods_by_name[method]
        option = single.GetOptions().Extensions[options_pb2.batching]
        batch = service.methods_by_name.get(option.method.rpartition(".")[2]) if option.method else None
        if batch is None:
            raise ValueError(f"{single.full_name} declares no (agora.api.v1.batching) batch method")
        messages = importlib.import_module(DOMAINS[domain].module)
        batch_class = getattr(messages, batch.input_type.name)
        response_class = getattr(messages, batch.output_type.name)
        send = self.channel(domain).unary_unary(
            f"/{service.full_name}/{batch.name}", request_serializer=batch_class.SerializeToString,
            response_deserializer=response_class.FromString)
        made = self._batchers[(domain, method)] = RequestBatcher(
            single, batch_class, send, self._defaults, key_field=idempotency_field(single))
        return made

    @property
    def identity(self) -> identity_pb2_grpc.IdentityServiceAsyncStub:
        return cast("identity_pb2_grpc.IdentityServiceAsyncStub", self.service("identity"))

    @property
    def polls(self) -> polls_pb2_grpc.PollServiceAsyncStub:
        return cast("polls_pb2_grpc.PollServiceAsyncStub", self.service("polls"))

    @property
    def auctions(self) -> auctions_pb2_grpc.AuctionServiceAsyncStub:
        return cast("auctions_pb2_grpc.AuctionServiceAsyncStub", self.service("auctions"))

    @property
    def chat(self) -> chat_pb2_grpc.ChatServiceAsyncStub:
        return cast("chat_pb2_grpc.ChatServiceAsyncStub", self.service("chat"))

    @property
    def customers(self) -> customers_pb2_grpc.CustomerServiceAsyncStub:
        return cast("customers_pb2_grpc.CustomerServiceAsyncStub", self.service("customers"))

    @property
    def catalog(self) -> catalog_pb2_grpc.CatalogServiceAsyncStub:
        return cast("catalog_pb2_grpc.CatalogServiceAsyncStub", self.service("catalog"))

    @property
    def orders(self) -> orders_pb2_grpc.OrderServiceAsyncStub:
        return cast("orders_pb2_grpc.OrderServiceAsyncStub", self.service("orders"))

    @property
    def payments(self) -> payments_pb2_grpc.PaymentServiceAsyncStub:
        return cast("payments_pb2_grpc.PaymentServiceAsyncStub", self.service("payments"))

    @property
    def notifications(self) -> notifications_pb2_grpc.NotificationServiceAsyncStub:
        return cast("notifications_pb2_grpc.NotificationServiceAsyncStub", self.service("notifications"))

    @property
    def audit(self) -> audit_pb2_grpc.AuditServiceAsyncStub:
        return cast("audit_pb2_grpc.AuditServiceAsyncStub", self.service("audit"))

    # -- live streams that resume after a dropped connection

    def watch_auction(self, auction_id: str, *, resume_from: int = 0, reconnect_for: float = 60.0,
                      on_retry: OnRetry | None = None) -> AsyncIterator[auctions_pb2.WatchAuctionResponse]:
        from agora.auctions.v1 import auctions_pb2

        request = auctions_pb2.WatchAuctionRequest(auction_id=auction_id, resume_from=resume_from)
        return aresume(self.auctions.WatchAuction, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_order(self, order_id: str, *, resume_from: int = 0, reconnect_for: float = 60.0,
                    on_retry: OnRetry | None = None) -> AsyncIterator[orders_pb2.WatchOrderResponse]:
        from agora.orders.v1 import orders_pb2

        request = orders_pb2.WatchOrderRequest(order_id=order_id, resume_from=resume_from)
        return aresume(self.orders.WatchOrder, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_results(self, poll_id: str, *, reconnect_for: float = 60.0,
                      on_retry: OnRetry | None = None) -> AsyncIterator[polls_pb2.WatchResultsResponse]:
        from agora.polls.v1 import polls_pb2

        request = polls_pb2.WatchResultsRequest(poll_id=poll_id)
        return aresume(self.polls.WatchResults, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_events(self, type_pattern: str = "", *, key: str = "", resume_from: int = 0,
                     reconnect_for: float = 60.0, on_retry: OnRetry | None = None,
                     ) -> AsyncIterator[audit_pb2.WatchEventsResponse]:
        from agora.audit.v1 import audit_pb2

        request = audit_pb2.WatchEventsRequest(type_pattern=type_pattern, key=key, resume_from=resume_from)
        return aresume(self.audit.WatchEvents, request, reconnect_for=reconnect_for, on_retry=on_retry)

    def watch_room(self, room_id: str = "general", *, resume_from: int = 0, reconnect_for: float = 60.0,
                   on_retry: OnRetry | None = None) -> AsyncIterator[chat_pb2.WatchRoomResponse]:
        from agora.chat.v1 import chat_pb2

        request = chat_pb2.WatchRoomRequest(room_id=room_id, resume_from=resume_from)
        return aresume(self.chat.WatchRoom, request, reconnect_for=reconnect_for, on_retry=on_retry)

    async def close(self) -> None:
        for batcher in self._batchers.values():
            await batcher.close()  # what is waiting goes out before its channel closes
        self._batchers.clear()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._services.clear()

    async def __aenter__(self) -> Agora:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
