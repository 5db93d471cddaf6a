"""The AuditService servicer: proto in, proto out; patterns and ranges in domain.py, storage behind store.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timezone
from typing import ClassVar

import grpc
from agora.audit.v1 import audit_pb2 as pb
from agora.audit.v1 import audit_pb2_grpc
from google.protobuf import json_format, struct_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from services.audit import domain
from services.audit.domain import AuditEvent, TypePattern
from services.audit.store import AuditStore, open_store
from services.kit import paging
from services.kit.errors import DomainError, InvalidArgument, NotFound
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.streams import SequencedLog

log = logging.getLogger("agora.audit")
STREAM = "all"  # one log for every event; each WatchEvents subscriber filters it



def _operators_only(context) -> None:
    """Reads of the audit log (every event of the mesh) are the operators': no user owns them, so
    only the service credential (X-Api-Key through the bridge) reads them; a signed-in user is
    PERMISSION_DENIED (the kit already refused anonymous callers: ACCESS_OWNER)."""
    from services.kit.auth import is_internal
    from services.kit.errors import PermissionDenied

    if not is_internal(context):
        raise PermissionDenied("the audit log is for operators: send the service API key as x-api-key")

class OutOfRange(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.OUT_OF_RANGE


def _ts(value) -> Timestamp:
    ts = Timestamp()
    if value is not None:
        ts.FromDatetime(value)
    return ts


def to_proto(e: AuditEvent) -> pb.AuditEvent:
    payload = struct_pb2.Struct()
    payload.update(e.payload)
    return pb.AuditEvent(id=e.id, type=e.type, source=e.source, key=e.key, occurred_at=_ts(e.occurred_at),
                         recorded_at=_ts(e.recorded_at), payload=payload, payload_type=e.payload_type,
                         headers=e.headers, sequence=e.sequence)


class InOrder:
    """Feeds recorded events to the live log in sequence order, though writes finish in any order.
    A sequence that never completes (a failed write) is skipped after `gap_wait` seconds."""

    def __init__(self, log_: SequencedLog, next_seq: int, *, gap_wait: float = 1.0) -> None:
        self.log = log_
        self.next = next_seq
        self.ready: dict[int, AuditEvent] = {}
        self.gap_wait = gap_wait
        self._gap_since: float | None = None

    def done(self, event: AuditEvent) -> None:
        if event.sequence < self.next:
            return
        self.ready[event.sequence] = event
        self.flush()

    def flush(self) -> None:
        while self.next in self.ready:
            event = self.ready.pop(self.next)
            self.log.append(STREAM, event.sequence, event)
            self.next += 1
        self._gap_since = (self._gap_since or time.monotonic()) if self.ready else None

    def skip_gaps(self) -> None:
        if self.ready and self._gap_since is not None and time.monotonic() - self._gap_since >= self.gap_wait:
            self.next = min(self.ready)
            self._gap_since = None
            self.flush()


class AuditService(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, store: AuditStore, *, capacity: int = 1024) -> None:
        self.store = store
        self.log: SequencedLog[str, AuditEvent] = SequencedLog(name="audit", capacity=capacity)
        self.order: InOrder | None = None
        self._gaps: asyncio.Task | None = None

    async def start(self) -> None:
        last = await self.store.last_sequence()
        self.log.seed(STREAM, last)
        self.order = InOrder(self.log, last + 1)
        self._gaps = asyncio.get_running_loop().create_task(self._skip_gaps())

    async def stop(self) -> None:
        if self._gaps is not None:
            self._gaps.cancel()

    async def _skip_gaps(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.order.skip_gaps()

    async def record(self, event: AuditEvent) -> AuditEvent:
        recorded, new = await self.store.record(event)
        if new and self.order is not None:
            self.order.done(recorded)
        return recorded

    async def LogEvent(self, request, context):
        payload = json_format.MessageToDict(request.payload)
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        occurred = request.occurred_at.ToDatetime(tzinfo=timezone.utc) if request.HasField("occurred_at") else None
        event = domain.logged_event(request.type, request.source, request.key, occurred, payload, size,
                                    dict(request.headers), request.event_id)
        return pb.LogEventResponse(event=to_proto(await self.record(event)))

    async def GetEvent(self, request, context):
        _operators_only(context)
        if not request.event_id.strip():
            raise InvalidArgument.field("event_id", "required")
        found = await self.store.get(request.event_id.strip())
        if found is None:
            raise NotFound.of("event", request.event_id)
        return pb.GetEventResponse(event=to_proto(found))

    async def QueryEvents(self, request, context):
        _operators_only(context)
        start = request.start_time.ToDatetime(tzinfo=timezone.utc) if request.HasField("start_time") else None
        end = request.end_time.ToDatetime(tzinfo=timezone.utc) if request.HasField("end_time") else None
        start, end = domain.time_range(start, end)
        pattern = TypePattern.parse(request.type_pattern)
        size = paging.page_size(request.page_size)
        parts = (str(domain.epoch_ms(start)), str(domain.epoch_ms(end)), request.type_pattern, request.key,
                 request.source)
        if not request.HasField("end_time"):
            parts = parts[:1] + ("now",) + parts[2:]  # 'now' moves between pages; the token stays valid
            if not request.HasField("start_time"):
                parts = ("default",) + parts[1:]
        after = paging.decode_token(request.page_token, *parts, kind=_audit_cursor)
        found = await self.store.query(start, end, pattern, request.key, request.source, after, size + 1)
        page = found[:size]
        token = ""
        if len(found) > size:
            token = paging.encode_token([domain.epoch_ms(page[-1].occurred_at), page[-1].sequence], *parts)
        return pb.QueryEventsResponse(events=[to_proto(e) for e in page], next_page_token=token)

    async def WatchEvents(self, request, context):
        _operators_only(context)
        pattern = TypePattern.parse(request.type_pattern)
        last = self.log.last_seq(STREAM)
        if request.resume_from > last:
            raise OutOfRange(f"resume_from {request.resume_from} is beyond the latest sequence {last}")

        async def replay(after: int, upto: int):
            return [(e.sequence, e) for e in await self.store.since(after, upto)]

        async for seq, event in self.log.subscribe(STREAM, request.resume_from, replay=replay,
                                                   start_at_tail=request.resume_from == 0):
            if (pattern is None or pattern.matches(event.type)) and (not request.key or event.key == request.key):
                yield pb.WatchEventsResponse(sequence=seq, event=to_proto(event))


async def build(runtime) -> ServiceSpec:
    from services.audit.handlers import EventRecorder

    store = open_store(runtime.settings)
    await store.start()
    bus = await runtime.bus()
    servicer = AuditService(store)
    recorder = EventRecorder(servicer.record)
    subscription = None

    async def start() -> None:
        nonlocal subscription
        await servicer.start()
        subscription = await recorder.subscribe(bus)

    async def stop() -> None:
        if subscription is not None:
            await subscription.cancel()
        await servicer.stop()
        await store.close()

    return ServiceSpec(
        domain=DOMAINS["audit"],
        register=lambda server: audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        on_start=[start],
        on_stop=[stop],
        sessions=runtime.sessions(),  # a signed-in user is told 403 (operators only), not 401
    )


def _audit_cursor(value) -> tuple[int, int]:
    """`kind` for audit page tokens: (occurred_at epoch ms, sequence) of the last event returned."""
    at, seq = (int(x) for x in value)
    return at, seq
