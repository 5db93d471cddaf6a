"""The AuditService servicer: proto in, proto out; patterns and ranges in domain.py, storage behind
store.py, the live feed of WatchEvents in feed.py."""

from __future__ import annotations

import json
import logging

from agora.audit.v1 import audit_pb2 as pb
from agora.audit.v1 import audit_pb2_grpc
from google.protobuf import json_format

from services.audit import domain, wire
from services.audit.consumers import EventRecorder
from services.audit.domain import TypePattern
from services.audit.feed import STREAM, AuditFeed
from services.audit.store import AuditStore, open_store
from services.kit import paging
from services.kit.auth import is_internal
from services.kit.errors import InvalidArgument, NotFound, OutOfRange, PermissionDenied
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.kit.wire import to_datetime

log = logging.getLogger("agora.audit")


def _operators_only(context) -> None:
    """Reads of the audit log (every event of the mesh) are the operators': no user owns them, so
    only the service credential (X-Api-Key through the bridge) reads them; a signed-in user is
    PERMISSION_DENIED (the kit already refused anonymous callers: ACCESS_OWNER)."""
    if not is_internal(context):
        raise PermissionDenied("the audit log is for operators: send the service API key as x-api-key")


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(self, store: AuditStore, feed: AuditFeed) -> None:
        self.store = store
        self.feed = feed

    async def LogEvent(self, request, context):
        payload = json_format.MessageToDict(request.payload)
        size = len(json.dumps(payload, separators=(",", ":")).encode())
        occurred = to_datetime(request.occurred_at) if request.HasField("occurred_at") else None
        event = domain.logged_event(request.type, request.source, request.key, occurred, payload, size,
                                    dict(request.headers), request.event_id)
        return pb.LogEventResponse(event=wire.event(await self.feed.record(event)))

    async def GetEvent(self, request, context):
        _operators_only(context)
        if not request.event_id.strip():
            raise InvalidArgument.field("event_id", "required")
        found = await self.store.get(request.event_id.strip())
        if found is None:
            raise NotFound.of("event", request.event_id)
        return pb.GetEventResponse(event=wire.event(found))

    async def QueryEvents(self, request, context):
        _operators_only(context)
        start = to_datetime(request.start_time) if request.HasField("start_time") else None
        end = to_datetime(request.end_time) if request.HasField("end_time") else None
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
        return pb.QueryEventsResponse(events=[wire.event(e) for e in page], next_page_token=token)

    async def WatchEvents(self, request, context):
        _operators_only(context)
        pattern = TypePattern.parse(request.type_pattern)
        last = self.feed.log.last_seq(STREAM)
        if request.resume_from > last:
            raise OutOfRange(f"resume_from {request.resume_from} is beyond the latest sequence {last}")

        async def replay(after: int, upto: int):
            return [(e.sequence, e) for e in await self.store.since(after, upto)]

        async for seq, event in self.feed.log.subscribe(STREAM, request.resume_from, replay=replay,
                                                        start_at_tail=request.resume_from == 0):
            if ((pattern is None or pattern.matches(event.type))
                    and (not request.key or event.key == request.key)):
                yield pb.WatchEventsResponse(sequence=seq, event=wire.event(event))


async def build(runtime) -> ServiceSpec:
    store = open_store(runtime.settings)
    bus = await runtime.bus()
    feed = AuditFeed(store)
    servicer = AuditServicer(store, feed)
    return ServiceSpec(
        domain=DOMAINS["audit"],
        register=lambda server: audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store], workers=[feed], consumers=[EventRecorder(feed.record)], bus=bus,
        sessions=runtime.sessions(),  # a signed-in user is told 403 (operators only), not 401
    )


def _audit_cursor(value) -> tuple[int, int]:
    """`kind` for audit page tokens: (occurred_at epoch ms, sequence) of the last event returned."""
    at, seq = (int(x) for x in value)
    return at, seq
