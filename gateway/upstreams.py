"""The bridge's upstream channels: one persistent grpc.aio channel per target, and its multi-callables."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.rpc import code_pb2

from gateway.errors import BridgeError
from gateway.routes import Binding

DEFAULT_UPSTREAM = "*"  # upstreams key naming the target for services not listed by name


class Upstreams:
    """One persistent grpc.aio channel per target, and the multi-callables built on them, made once."""

    def __init__(self, targets: Mapping[str, str], options: Sequence[tuple[str, Any]] = (),
                 credentials: grpc.ChannelCredentials | None = None):
        self.targets = dict(targets)
        self.options = list(options)
        self.credentials = credentials  # TLS to the upstreams when set
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._callables: dict[str, Any] = {}

    def target(self, service: str) -> str | None:
        return self.targets.get(service) or self.targets.get(DEFAULT_UPSTREAM)

    def channel(self, target: str) -> grpc.aio.Channel:
        ch = self._channels.get(target)
        if ch is None:
            if self.credentials is not None:
                ch = grpc.aio.secure_channel(target, self.credentials, options=self.options)
            else:
                ch = grpc.aio.insecure_channel(target, options=self.options)
            self._channels[target] = ch
        return ch

    def callable(self, binding: Binding) -> Any:
        key = binding.rpc_path
        fn = self._callables.get(key)
        if fn is None:
            target = self.target(binding.service)
            if target is None:
                raise BridgeError(code_pb2.UNAVAILABLE, f"no upstream configured for {binding.service}")
            ch = self.channel(target)
            kind = {
                (False, False): ch.unary_unary,
                (False, True): ch.unary_stream,
                (True, False): ch.stream_unary,
                (True, True): ch.stream_stream,
            }[(binding.client_streaming, binding.server_streaming)]
            fn = kind(
                key,
                request_serializer=binding.request_class.SerializeToString,
                response_deserializer=binding.response_class.FromString,
            )
            self._callables[key] = fn
        return fn

    def unary(self, service: str, method, message_class) -> tuple[Any, type]:
        """A unary method's multi-callable by its descriptor (a feed's admission check), and its
        request class; `message_class` makes the classes from the bridge's descriptor pool."""
        key = f"/{service}/{method.name}"
        request_class = message_class(method.input_type)
        fn = self._callables.get(key)
        if fn is None:
            target = self.target(service)
            if target is None:
                raise BridgeError(code_pb2.UNAVAILABLE, f"no upstream configured for {service}")
            fn = self._callables[key] = self.channel(target).unary_unary(
                key, request_serializer=request_class.SerializeToString,
                response_deserializer=message_class(method.output_type).FromString)
        return fn, request_class

    async def close(self) -> None:
        channels, self._channels, self._callables = self._channels, {}, {}
        for ch in channels.values():
            with contextlib.suppress(Exception):
                await ch.close()
