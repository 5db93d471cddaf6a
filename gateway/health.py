"""`/health`: the mesh's aggregate, each served service's grpc.health.v1 status via its channel."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from gateway.upstreams import Upstreams


async def mesh_health(upstreams: Upstreams, services: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """(200 or 503, {"status", "services": {name: status}}): 200 only when every service is SERVING."""

    async def check(service: str) -> str:
        target = upstreams.target(service)
        fn = upstreams.channel(target).unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        for name in (service, ""):
            try:
                reply = await fn(health_pb2.HealthCheckRequest(service=name), timeout=2.0)
                return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as exc:
                # A server that registers only the overall status answers NOT_FOUND per service.
                if exc.code() == grpc.StatusCode.NOT_FOUND and name:
                    continue
                return f"{exc.code().name}: {exc.details()}"
        return "UNKNOWN"

    results = await asyncio.gather(*(check(s) for s in services))
    status = dict(zip(services, results, strict=True))
    ok = all(r == "SERVING" for r in results)
    return (200 if ok else 503), {"status": "SERVING" if ok else "NOT_SERVING", "services": status}
