"""The stand-in for a domain whose issue has not landed: it serves health, and every RPC of its
contract answers UNIMPLEMENTED naming the issue that builds it."""

from __future__ import annotations

import importlib

import grpc
from google.protobuf import descriptor_pool

from services.kit.registry import Domain
from services.kit.server import ServiceSpec


def _service_descriptor(domain: Domain):
    importlib.import_module(f"agora.{domain.name}.v1.{domain.name}_pb2")  # loads it into the default pool
    return descriptor_pool.Default().FindServiceByName(domain.service)


def not_built_spec(domain: Domain) -> ServiceSpec:
    service = _service_descriptor(domain)
    handlers = {}
    for method in service.methods:
        message = (
            f"{domain.service}/{method.name} is not built yet: the {domain.name} domain lands with issue "
            f"#{domain.issue}; this server answers health and reflection until then"
        )

        async def unary(request, context, message=message):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

        async def streaming(request, context, message=message):
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
            yield b""  # makes this an async generator, as streaming handlers must be

        if method.server_streaming and method.client_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(streaming)
        elif method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(streaming)
        elif method.client_streaming:
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(unary)
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(unary)
    generic = grpc.method_handlers_generic_handler(domain.service, handlers)
    return ServiceSpec(domain=domain, register=lambda server: server.add_generic_rpc_handlers((generic,)))
