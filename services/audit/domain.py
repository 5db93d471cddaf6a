"""Recorded events as values; type patterns, time ranges and validation (no I/O)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from services.kit.errors import InvalidArgument

MAX_RANGE = timedelta(days=31)
MAX_PAYLOAD_BYTES = 64 * 1024
REDACTED = "[redacted]"
SECRET_FIELDS = {"paymentCardToken"}  # never stored (OrderCreated carries the card token for payments only)

_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")
_PATTERN = re.compile(r"^[a-z0-9_.*#]+$")


@dataclass(frozen=True)
class AuditEvent:
    id: str
    type: str
    source: str
    key: str
    occurred_at: datetime
    payload: dict = field(default_factory=dict)
    payload_type: str = ""
    headers: dict = field(default_factory=dict)
    recorded_at: datetime | None = None
    sequence: int = 0

    @property
    def day(self) -> str:
        return day_of(self.occurred_at)


def now() -> datetime:
    """Now, to the millisecond (what Cassandra keeps), so every store answers alike."""
    return to_ms(datetime.now(timezone.utc))


def to_ms(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def day_of(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d")


def days_between(start: datetime, end: datetime) -> list[str]:
    """Every day partition a [start, end) range touches."""
    days, at = [], start.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    while at < end:
        days.append(day_of(at))
        at += timedelta(days=1)
    return days


def redact(payload: dict) -> dict:
    return {k: (REDACTED if k in SECRET_FIELDS and v else v) for k, v in payload.items()}


@dataclass(frozen=True)
class TypePattern:
    """`*` (or `#`) matches any run of characters, dots included; no wildcard: the exact type."""

    text: str

    @classmethod
    def parse(cls, text: str, field_name: str = "type_pattern") -> TypePattern | None:
        text = text.strip()
        if not text:
            return None
        if not _PATTERN.match(text):
            raise InvalidArgument.field(field_name, "only a-z, 0-9, '_', '.', and the wildcards '*' or '#'")
        return cls(text.replace("#", "*"))

    @property
    def exact(self) -> bool:
        return "*" not in self.text

    def matches(self, type: str) -> bool:
        return re.fullmatch(".*".join(re.escape(part) for part in self.text.split("*")), type) is not None

    def like(self) -> str:
        """The same pattern for SQL LIKE ... ESCAPE '\\'."""
        return self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")


def logged_event(type: str, source: str, key: str, occurred_at: datetime | None, payload: dict,
                 payload_size: int, headers: dict, event_id: str) -> AuditEvent:
    problems: dict[str, str] = {}
    type = type.strip()
    if not type:
        problems["type"] = "required"
    elif not _TYPE.match(type):
        problems["type"] = f"{type!r} is not dot-separated lower_snake words such as web.checkout.started"
    if payload_size > MAX_PAYLOAD_BYTES:
        problems["payload"] = f"{payload_size} bytes; at most {MAX_PAYLOAD_BYTES}"
    if event_id:
        try:
            event_id = str(uuid.UUID(event_id))
        except ValueError:
            problems["event_id"] = f"{event_id!r} is not a UUID"
    if problems:
        raise InvalidArgument.fields(problems)
    return AuditEvent(id=event_id or str(uuid.uuid4()), type=type, source=source.strip() or "client",
                      key=key, occurred_at=to_ms(occurred_at or now()), payload=payload, headers=headers)


def time_range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or now()
    start = start or end - timedelta(hours=24)
    if start > end:
        raise InvalidArgument.field("start_time", "must not be after end_time")
    if end - start > MAX_RANGE:
        raise InvalidArgument.field("end_time", "the range may span at most 31 days")
    return start, end




Cursor = tuple[int, int]  # (occurred_at in epoch ms, sequence) of the last event returned


def epoch_ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)

