"""The Mirror test service on a real grpc.aio server, built from the compiled test descriptor set."""

from __future__ import annotations

import asyncio
from pathlib import Path

import google.api
import grpc
import grpc_tools
from google.protobuf import any_pb2, descriptor_pool, message_factory
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from grpc_tools import protoc

from services.kit import errors, validation

PROTO_ROOT = Path(__file__).parent / "protos"
PROTO_FILE = "agora/testing/v1/mirror.proto"
SERVICE = "agora.testing.v1.Mirror"


def compile_descriptor_set(out_dir: Path) -> bytes:
    """protoc --include_imports --include_source_info, with google/api from googleapis-common-protos."""
    out = out_dir / "mirror.binpb"
    googleapis = Path(google.api.__path__[0]).parent.parent
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    rc = protoc.main(
        [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{PROTO_ROOT.parents[2] / 'protos'}",  # agora/api/v1/options.proto
            f"-I{googleapis}",
            f"-I{wkt}",
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            PROTO_FILE,
        ]
    )
    if rc != 0:
        raise RuntimeError(f"protoc failed with {rc}")
    return out.read_bytes()


class Messages:
    """Message classes of the test API, from a pool of the test's own (as a real service has its stubs)."""

    def __init__(self, descriptor_set: bytes):
        from google.protobuf import descriptor_pb2

        fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        self.pool = descriptor_pool.DescriptorPool()
        for f in fds.file:
            self.pool.Add(f)

    def __getattr__(self, name: str):
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(f"agora.testing.v1.{name}"))

    def wkt(self, name: str):
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(f"google.protobuf.{name}"))


async def _checked(request, context):
    """The declared rules, as every Agora service's kit enforces them (closed enums among them)."""
    try:
        return validation.check(request)
    except errors.InvalidArgument as exc:
        await context.abort_with_status(rpc_status.to_status(exc.to_status()))


class MirrorService:
    def __init__(self, messages: Messages):
        self.m = messages
        self.tail_cancelled: dict[str, asyncio.Event] = {}
        self.tail_started: dict[str, asyncio.Event] = {}
        self.topics: dict[str, list[str]] = {}  # a topic's log: entry n is sequence n + 1
        self.topic_changed: dict[str, asyncio.Condition] = {}
        self.topic_calls: dict[str, list[dict[str, str]]] = {}  # each Topic/History/Scores call's metadata
        self.stalled_topics: set[str] = set()  # topics whose streams stop sending (a stuck server)

    async def echo(self, request, context):
        return await _checked(request, context)

    async def get_inner(self, request, context):
        return await _checked(request, context)

    async def update_sample(self, request, context):
        return await _checked(request, context)

    async def fail(self, request, context):
        if request.code == 0:
            return self.m.wkt("Empty")()
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field="code",
                                                                          description="asked for")]
        )
        info = error_details_pb2.ErrorInfo(reason="REQUESTED", domain="agora.testing", metadata={"k": "v"})
        details = []
        for d in (bad, info):
            packed = any_pb2.Any()
            packed.Pack(d)
            details.append(packed)
        status = status_pb2.Status(code=request.code,
                                   message=request.message or f"failed with {request.code}",
                                   details=details)
        await context.abort_with_status(rpc_status.to_status(status))

    async def count(self, request, context):
        for i in range(max(request.resume_from, 0) + 1, min(request.count, 200) + 1):
            yield self.m.Tick(sequence=i, text=f"tick {i}")

    async def tail(self, request, context):
        cancelled = self.tail_cancelled.setdefault(request.topic, asyncio.Event())
        self.tail_started.setdefault(request.topic, asyncio.Event()).set()
        try:
            # A "quiet-" topic ticks slower than the bridge's test heartbeat (0.2 s), so keepalives show.
            pause = 0.5 if request.topic.startswith("quiet-") else 0.02
            i = 0
            while True:
                i += 1
                yield self.m.Tick(sequence=i, text=request.topic)
                await asyncio.sleep(pause)
        finally:
            cancelled.set()

    def _changed(self, topic: str) -> asyncio.Condition:
        return self.topic_changed.setdefault(topic, asyncio.Condition())

    async def publish(self, request, context):
        request = await _checked(request, context)  # count is bounded (schemathesis tries 2**31)
        log = self.topics.setdefault(request.topic, [])
        count = max(request.count, 1)
        for i in range(count):
            log.append(request.text if count == 1 else f"{request.text} {i + 1}")
        async with self._changed(request.topic):
            self._changed(request.topic).notify_all()
        return self.m.Tick(sequence=len(log), text=log[-1])

    async def admit_topic(self, request, context):
        if request.topic.startswith("club-"):
            member = ("authorization", "Bearer member") in context.invocation_metadata()
            if not member:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{request.topic} is for members")
        return self.m.wkt("Empty")()

    async def _log(self, request, context, start: int):
        """A topic's entries after `start`, then live ones, as Ticks."""
        self.topic_calls.setdefault(request.topic, []).append(
            {k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        log = self.topics.setdefault(request.topic, [])
        if request.resume_from > len(log):
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, "resume_from is beyond the latest sequence")
        await context.send_initial_metadata((("x-stream", "open"),))
        sent = start
        changed = self._changed(request.topic)
        while True:
            while sent < len(log) and request.topic not in self.stalled_topics:
                sent += 1
                yield self.m.Tick(sequence=sent, text=log[sent - 1])
            async with changed:
                await changed.wait()

    async def topic(self, request, context):
        start = request.resume_from or len(self.topics.get(request.topic, []))
        async for tick in self._log(request, context, start):
            yield tick

    async def history(self, request, context):
        async for tick in self._log(request, context, request.resume_from):
            yield tick

    async def scores(self, request, context):
        self.topic_calls.setdefault(request.topic, []).append({})
        log = self.topics.setdefault(request.topic, [])
        if not log:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no topic {request.topic}")
        changed = self._changed(request.topic)
        sent = 0
        while True:
            if sent < len(log):
                sent = len(log)
                yield self.m.Tick(sequence=sent, text=log[-1])
            async with changed:
                await changed.wait()

    async def chat(self, request_iterator, context):
        async for message in request_iterator:
            yield self.m.ChatMessage(room=message.room, user=message.user, text=message.text.upper())

    async def headers(self, request, context):
        await context.send_initial_metadata(
            (("x-upstream", "mirror"), ("set-cookie", "agora_session=fresh; Path=/; HttpOnly"))
        )
        context.set_trailing_metadata((("x-trailer", "done"),))
        md = {k: v for k, v in context.invocation_metadata() if not k.endswith("-bin")}
        return self.m.HeadersReply(metadata=md)

    async def slow(self, request, context):
        await asyncio.sleep(min(request.delay.ToTimedelta().total_seconds(), 5.0))
        return self.m.wkt("Empty")()

    def handler(self) -> grpc.GenericRpcHandler:
        m = self.m

        def uu(fn, req, resp):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        def us(fn, req, resp):
            return grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        empty = m.wkt("Empty")
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": uu(self.echo, m.Sample, m.Sample),
                "GetSample": uu(self.echo, m.Sample, m.Sample),
                "UpdateSample": uu(self.update_sample, m.UpdateSampleRequest, m.UpdateSampleRequest),
                "GetInner": uu(self.get_inner, m.Sample, m.Sample),
                "Fail": uu(self.fail, m.FailRequest, empty),
                "Count": us(self.count, m.CountRequest, m.Tick),
                "Tail": us(self.tail, m.TailRequest, m.Tick),
                "Topic": us(self.topic, m.TopicRequest, m.Tick),
                "History": us(self.history, m.TopicRequest, m.Tick),
                "Scores": us(self.scores, m.TopicRequest, m.Tick),
                "AdmitTopic": uu(self.admit_topic, m.TopicRequest, empty),
                "Publish": uu(self.publish, m.PublishRequest, m.Tick),
                "Chat": grpc.stream_stream_rpc_method_handler(
                    self.chat, request_deserializer=m.ChatMessage.FromString,
                    response_serializer=m.ChatMessage.SerializeToString,
                ),
                "Headers": uu(self.headers, m.HeadersRequest, m.HeadersReply),
                "Slow": uu(self.slow, m.SlowRequest, empty),
            },
        )


async def start_server(service: MirrorService, *, serving: bool = True) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((service.handler(),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    await health_servicer.set(SERVICE, status)
    return server, port

