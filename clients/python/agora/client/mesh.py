"""Where the mesh's services are and how to open a channel to one: targets, retries, keepalive.

The ten domains and their default ports are listed here, once: the client installs without the
server code, and the server (which depends on this distribution) reads them from here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class DomainInfo:
    name: str
    port: int  # default gRPC port
    service: str  # short gRPC service name, e.g. "PollService"

    @property
    def module(self) -> str:
        return f"agora.{self.name}.v1.{self.name}_pb2"

    @property
    def full_service(self) -> str:
        return f"agora.{self.name}.v1.{self.service}"


DOMAINS: dict[str, DomainInfo] = {
    d.name: d
    for d in (
        DomainInfo("identity", 50051, "IdentityService"),
        DomainInfo("polls", 50052, "PollService"),
        DomainInfo("auctions", 50053, "AuctionService"),
        DomainInfo("chat", 50054, "ChatService"),
        DomainInfo("customers", 50055, "CustomerService"),
        DomainInfo("catalog", 50056, "CatalogService"),
        DomainInfo("orders", 50057, "OrderService"),
        DomainInfo("payments", 50058, "PaymentService"),
        DomainInfo("notifications", 50059, "NotificationService"),
        DomainInfo("audit", 50060, "AuditService"),
    )
}

DEFAULT_HOST = "127.0.0.1"

# Request fields that make a write safe to repeat: the client fills an empty one with a fresh
# UUID, so a retry after UNAVAILABLE is recognised by the server and never applied twice.
IDEMPOTENCY_FIELDS = ("request_id", "client_message_id", "event_id")
# Reads by name, plus writes whose contract says repeating them changes nothing.
_READ_PREFIXES = ("Get", "List", "Watch", "Query", "Check", "History", "WhoAmI")
_IDEMPOTENT_WRITES = {"ClosePoll", "CancelOrder"}

RETRY_POLICY = {
    "maxAttempts": 5,
    "initialBackoff": "0.2s",
    "maxBackoff": "3s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}

_HOST_PORT = re.compile(r"^(\[[^\]]+\]|[^:\[\]]+):(\d+)$")


def resolve_targets(target: str | None = None, *, port_offset: int | None = None,
                    env: Mapping[str, str] | None = None) -> dict[str, str]:
    """host:port of every domain.

    `target` is either a host ("localhost": every domain on its own default port plus
    AGORA_PORT_OFFSET) or one address "host:port" that answers for every service (a gRPC-aware
    proxy). Without `target`: AGORA_TARGET, then each domain's AGORA_<DOMAIN>_TARGET, else 127.0.0.1.
    """
    env = os.environ if env is None else env
    offset = port_offset if port_offset is not None else int(env.get("AGORA_PORT_OFFSET") or 0)
    explicit = target or env.get("AGORA_TARGET") or ""
    out: dict[str, str] = {}
    for name, domain in DOMAINS.items():
        if explicit:
            out[name] = explicit if _HOST_PORT.match(explicit) else f"{explicit}:{domain.port + offset}"
        else:
            out[name] = env.get(f"AGORA_{name.upper()}_TARGET") or f"{DEFAULT_HOST}:{domain.port + offset}"
    return out


def stub_module(domain: str) -> ModuleType:
    return importlib.import_module(f"{DOMAINS[domain].module}_grpc")


def service_descriptor(domain: str) -> Any:
    module = importlib.import_module(DOMAINS[domain].module)
    return module.DESCRIPTOR.services_by_name[DOMAINS[domain].service]


def idempotency_field(method: Any) -> str | None:
    """The request field the client fills to make `method` safe to retry, if it has one."""
    fields = method.input_type.fields_by_name
    return next((f for f in IDEMPOTENCY_FIELDS if f in fields), None)


def is_retryable(method: Any) -> bool:
    if method.client_streaming:
        return False  # a request stream cannot be replayed by the channel
    return (method.name.startswith(_READ_PREFIXES) or method.name in _IDEMPOTENT_WRITES
            or idempotency_field(method) is not None)


def service_config(domain: str) -> str:
    """gRPC service config JSON: retry the domain's idempotent methods on UNAVAILABLE, with back-off."""
    service = service_descriptor(domain)
    names = [{"service": service.full_name, "method": m.name} for m in service.methods if is_retryable(m)]
    config: dict[str, Any] = {"methodConfig": []}
    if names:
        config["methodConfig"].append({"name": names, "retryPolicy": RETRY_POLICY})
    return json.dumps(config)


def channel_options(domain: str, *, max_message_bytes: int = 8 * 1024 * 1024) -> list[tuple[str, Any]]:
    return [
        ("grpc.service_config", service_config(domain)),
        ("grpc.enable_retries", 1),
        # Keepalive finds a dead connection on a quiet watch; the servers allow a ping every 5 s.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.primary_user_agent", "agora-client/0.1"),
    ]


def auth_metadata(token: str | None, extra: Any = None) -> list[tuple[str, str]]:
    """The session token, and for an operator (AGORA_SERVICE_API_KEY in the environment) the mesh's
    service credential as `x-api-key`: what operator-only methods (the audit log) need."""
    import os

    metadata = list(extra or ())
    if token and not any(k == "authorization" for k, _ in metadata):
        metadata.append(("authorization", f"Bearer {token}"))
    key = os.environ.get("AGORA_SERVICE_API_KEY", "")
    if key and not any(k == "x-api-key" for k, _ in metadata):
        metadata.append(("x-api-key", key))
    return metadata
