"""One generated stub's methods with the client's defaults: token, deadline, idempotency key, AgoraError.

Sync flavour; `agora.client.aio` has the asyncio one. A wrapped method is called exactly like the
generated one (`client.polls.GetPoll(request, timeout=..., metadata=...)`) and returns the same
thing, so the mypy-protobuf stubs type it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from agora.client.errors import AgoraError
from agora.client.mesh import DOMAINS, auth_metadata, idempotency_field, service_descriptor, stub_module


class CallDefaults:
    """What every call of one client carries unless the caller says otherwise."""

    def __init__(self, token: str | None, timeout: float | None) -> None:
        self.token = token
        self.timeout = timeout

    def metadata(self, extra: Any) -> list[tuple[str, str]]:
        return auth_metadata(self.token, extra)


def with_idempotency_key(request: Any, field: str | None) -> Any:
    """`request` with a fresh UUID in its idempotency field when the caller left it empty."""
    if field is None or getattr(request, field):
        return request
    keyed = type(request)()
    keyed.CopyFrom(request)
    setattr(keyed, field, str(uuid.uuid4()))
    return keyed


class UnaryMethod:
    def __init__(self, inner: Any, defaults: CallDefaults, key_field: str | None) -> None:
        self._inner, self._defaults, self._key_field = inner, defaults, key_field

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 **kwargs: Any) -> Any:
        request = with_idempotency_key(request, self._key_field)
        try:
            return self._inner(request, timeout=timeout if timeout is not None else self._defaults.timeout,
                               metadata=self._defaults.metadata(metadata), **kwargs)
        except grpc.RpcError as error:
            raise AgoraError.from_rpc_error(error) from None

    def with_call(self, request: Any, timeout: float | None = None, metadata: Any = None,
                  **kwargs: Any) -> Any:
        request = with_idempotency_key(request, self._key_field)
        try:
            return self._inner.with_call(request,
                                         timeout=timeout if timeout is not None else self._defaults.timeout,
                                         metadata=self._defaults.metadata(metadata), **kwargs)
        except grpc.RpcError as error:
            raise AgoraError.from_rpc_error(error) from None


class ResponseStream:
    """A response stream whose failures arrive as AgoraError; `cancel()` ends it early."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._call)
        except grpc.RpcError as error:
            raise AgoraError.from_rpc_error(error) from None

    def cancel(self) -> bool:
        return bool(self._call.cancel())

    def __getattr__(self, name: str) -> Any:  # initial_metadata(), code(), ... of the call
        return getattr(self._call, name)


class StreamingMethod:
    """Server-streaming or bidirectional; no default deadline (a watch lasts as long as it is read)."""

    def __init__(self, inner: Any, defaults: CallDefaults) -> None:
        self._inner, self._defaults = inner, defaults

    def __call__(self, request: Any, timeout: float | None = None, metadata: Any = None,
                 **kwargs: Any) -> ResponseStream:
        try:
            call = self._inner(request, timeout=timeout, metadata=self._defaults.metadata(metadata), **kwargs)
        except grpc.RpcError as error:
            raise AgoraError.from_rpc_error(error) from None
        return ResponseStream(call)


class ServiceClient:
    """A domain's stub with every method wrapped; attribute names are the RPC names."""

    def __init__(self, domain: str, channel: grpc.Channel, defaults: CallDefaults) -> None:
        stub = getattr(stub_module(domain), f"{DOMAINS[domain].service}Stub")(channel)
        self.domain = domain
        for method in service_descriptor(domain).methods:
            inner = getattr(stub, method.name)
            wrapped: Callable[..., Any]
            if method.server_streaming:
                wrapped = StreamingMethod(inner, defaults)
            else:
                wrapped = UnaryMethod(inner, defaults,
                                      None if method.client_streaming else idempotency_field(method))
            setattr(self, method.name, wrapped)

    def __repr__(self) -> str:
        return f"<agora {self.domain} client>"
