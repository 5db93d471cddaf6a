"""Malformed protobuf frames and oversized messages to every RPC on every gRPC port: each call ends
with a gRPC status, the process lives, health still SERVING, memory bounded."""

from __future__ import annotations

import importlib
import random

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit.registry import DOMAINS
from tests.fuzz.conftest import MAX_MESSAGE_BYTES

GARBAGE = [
    b"\xff" * 16,                      # invalid tag
    b"\x0a\xff\xff\xff\xff\x0f",       # length-delimited field, length far past the end
    b"\x0a\x05abc",                    # truncated string
    b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # varint longer than 10 bytes
    b"\x0b" * 200,                     # start-group tags never closed
    b"\x0a\x02\xc3\x28",              # invalid UTF-8 in a string field
    b"\x0d\x00",                       # fixed32 cut short
    bytes(random.Random(11).getrandbits(8) for _ in range(512)),
]


def _methods(domain) -> list[tuple[str, bool, bool]]:
    pkg = domain.service.rsplit(".", 1)[0]  # agora.polls.v1
    module = importlib.import_module(f"{pkg}.{domain.name}_pb2")
    service = module.DESCRIPTOR.services_by_name[domain.service.rsplit(".", 1)[1]]
    return [(f"/{service.full_name}/{m.name}", m.client_streaming, m.server_streaming)
            for m in service.methods]


# grpc.aio's own client reports this when its write of a request frame loses the race with the
# server's status (the server refused the call while the client was still sending; grpc/grpc#36066).
# It is the client library's error, not the server's answer: such a call is made again.
CLIENT_WRITE_RACE = "Internal error from Core"


async def _call(channel, path, client_streaming, server_streaming, payload: bytes):
    for _ in range(3):
        code = await _call_once(channel, path, client_streaming, server_streaming, payload)
        if code is not CLIENT_WRITE_RACE:
            return code
    return grpc.StatusCode.INTERNAL


async def _call_once(channel, path, client_streaming, server_streaming, payload: bytes):
    kind = {(False, False): channel.unary_unary, (False, True): channel.unary_stream,
            (True, False): channel.stream_unary,
            (True, True): channel.stream_stream}[(client_streaming, server_streaming)]
    fn = kind(path, request_serializer=None, response_deserializer=None)
    request = iter([payload]) if client_streaming else payload
    try:
        call = fn(request, timeout=3)
        if server_streaming:
            async for _ in call:
                break
            call.cancel()
            return "stream opened"
        await call
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        if client_streaming and exc.code() == grpc.StatusCode.INTERNAL and exc.details() == CLIENT_WRITE_RACE:
            return CLIENT_WRITE_RACE
        return exc.code()


async def test_garbage_and_oversized_frames_get_a_status(fuzz_mesh):
    rss_before = fuzz_mesh.rss_kb()
    tried, codes = 0, {}
    oversized = b"\x0a" + b"\x80\x80\x20" + b"x" * (MAX_MESSAGE_BYTES + 1024)  # a string field past the limit
    for name, domain in DOMAINS.items():
        async with grpc.aio.insecure_channel(fuzz_mesh.target(name),
                                             options=[("grpc.max_send_message_length", 8 << 20)]) as channel:
            for path, cs, ss in _methods(domain):
                for payload in GARBAGE:
                    code = await _call(channel, path, cs, ss, payload)
                    codes[code] = codes.get(code, 0) + 1
                    tried += 1
                code = await _call(channel, path, cs, ss, oversized)
                tried += 1
                # A client stream's access class is checked before its first frame is read: an
                # anonymous caller of a USER/OWNER/INTERNAL stream is refused before the oversized frame.
                refused_first = cs and code in (grpc.StatusCode.UNAUTHENTICATED,
                                                grpc.StatusCode.PERMISSION_DENIED)
                assert code == grpc.StatusCode.RESOURCE_EXHAUSTED or refused_first, \
                    f"{path}: {code} for a message over the limit"
        assert fuzz_mesh.alive(), f"the mesh died on {name}:\n{fuzz_mesh.log_text()[-3000:]}"
    for name in DOMAINS:
        async with grpc.aio.insecure_channel(fuzz_mesh.target(name)) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                    timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, name
    grown = fuzz_mesh.rss_kb() - rss_before
    print(f"\n{tried} malformed/oversized frames to {len(DOMAINS)} ports; "
          f"statuses {dict((str(k), v) for k, v in codes.items())}; RSS +{grown} KiB")
    assert grown < 150_000, f"RSS grew by {grown} KiB"


async def test_a_malformed_frame_is_invalid_argument(fuzz_mesh):
    async with grpc.aio.insecure_channel(fuzz_mesh.target("identity")) as channel:
        code = await _call(channel, "/agora.identity.v1.IdentityService/SignUp", False, False, GARBAGE[0])
    assert code == grpc.StatusCode.INVALID_ARGUMENT
