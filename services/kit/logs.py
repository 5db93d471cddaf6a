"""Structured logs: one JSON object per line, carrying the request id of the call being served and,
while tracing is on, the trace and span ids of the span that was current when the line was logged."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from services.kit.telemetry.tracing import current_ids as _trace_ids

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        ids = _trace_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        ids = _trace_ids()
        if ids is not None:
            rid = f"{rid} trace={ids[0]} span={ids[1]}".lstrip()
        return f"{text} [{rid}]" if rid else text



def configure(level: str = "INFO", fmt: str = "json", stream=None) -> None:
    """Root level plus per-module overrides: `INFO` or `INFO,agora.bus=DEBUG,grpc=WARNING`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    parts = [p.strip() for p in level.split(",") if p.strip()]
    root.setLevel("INFO")
    # pika logs every failed reconnect attempt at ERROR; the bus reports its own state once.
    logging.getLogger("pika").setLevel("CRITICAL")
    logging.getLogger("cassandra").setLevel("WARNING")
    for part in parts:
        if "=" in part:
            name, _, lvl = part.partition("=")
            logging.getLogger(name.strip()).setLevel(lvl.strip().upper())
        else:
            root.setLevel(part.upper())
