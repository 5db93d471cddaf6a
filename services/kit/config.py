"""Twelve-factor configuration: every setting is an environment variable with a typed default.

`Settings.from_env()` reads them all in one place; `describe()` renders the table that the
server commands' `--help` print (`agora up --help`, `agora serve --help`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.kit.registry import DOMAINS

METRICS_PORT = 9464  # /metrics of `agora up` (and of every pod in the cluster)


def _setting(env: str, default: Any, help: str,
             check: tuple[Callable[[Any], bool], str] | None = None) -> Any:
    """A field read from `env`; `check` = (test, what a valid value is) refuses e.g. 0 attempts at start."""
    return field(default=default, metadata={"env": env, "help": help, "check": check})


_POSITIVE = (lambda v: v > 0, "more than 0")
_NOT_NEGATIVE = (lambda v: v >= 0, "0 or more")
_PORT = (lambda v: 0 < v < 65536, "a port number (1-65535)")


def _networks(text: str) -> bool:
    import ipaddress

    try:
        for entry in filter(None, (e.strip() for e in text.split(","))):
            if entry != "*":
                ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


_NETWORKS = (_networks, "comma-separated IP addresses or CIDR networks (or *)")


@dataclass(frozen=True)
class Settings:
    backends: str = _setting(
        "AGORA_BACKENDS", "embedded",
        "embedded (SQLite + in-process bus) or real (PostgreSQL, MongoDB, Cassandra, RabbitMQ)"
    )
    data_dir: Path = _setting("AGORA_DATA_DIR", Path("data"), "where embedded SQLite files live")
    host: str = _setting("AGORA_HOST", "127.0.0.1", "address gRPC servers and the bridge bind to")
    grpc_port: int = _setting("AGORA_GRPC_PORT", 0,
                              "gRPC port for `agora serve <domain>` (0 = the domain's default)")
    port_offset: int = _setting(
        "AGORA_PORT_OFFSET", 0, "added to every domain's default gRPC port (two meshes on one machine)"
    )
    http_port: int = _setting("AGORA_HTTP_PORT", 8080, "port of the REST/SSE/WebSocket bridge")
    gateway_workers: int = _setting(
        "AGORA_GATEWAY_WORKERS", 1,
        "bridge processes `agora serve gateway` runs on the one HTTP port (SO_REUSEPORT, Linux); "
        "about one per CPU core the bridge gets (`agora up` always runs one)", _POSITIVE
    )
    seed_ports: bool = _setting(
        "AGORA_SEED_PORTS", False,
        "the bridge also listens on the seed systems' own ports (3080 auctions; 8081-8083 commerce), "
        "so their clients need no change, not even their base URL"
    )
    csrf_key: str = _setting(
        "AGORA_CSRF_KEY", "",
        "secret that signs the bridge's CSRF cookie (share it between bridge replicas); "
        "empty = random per process"
    )
    shutdown_grace: float = _setting("AGORA_SHUTDOWN_GRACE", 4.0,
                                     "seconds in-flight calls get to finish on SIGTERM")
    health_interval: float = _setting("AGORA_HEALTH_INTERVAL", 1.0,
                                      "seconds between dependency health probes")
    max_message_bytes: int = _setting("AGORA_MAX_MESSAGE_BYTES", 4 * 1024 * 1024,
                                      "largest gRPC message accepted")
    log_level: str = _setting("AGORA_LOG_LEVEL", "INFO",
                              "root log level; per module as `agora.bus=DEBUG,grpc=WARNING`")
    log_format: str = _setting("AGORA_LOG_FORMAT", "json", "json (one object per line) or text")
    metrics_port: int = _setting(
        "AGORA_METRICS_PORT", 0,
        "Prometheus /metrics port "
        "(0 = 9464 under `agora up`, the domain's gRPC port + 10000 under `serve`; -1 = off)"
    )
    otlp_endpoint: str = _setting(
        "AGORA_OTLP_ENDPOINT", "",
        "OpenTelemetry collector (OTLP/HTTP, e.g. http://otel-collector:4318); empty = tracing off"
    )
    trace_sample_ratio: float = _setting("AGORA_TRACE_SAMPLE_RATIO", 1.0,
                                         "share of new traces recorded (0..1)")
    postgres_url: str = _setting(
        "AGORA_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres",
        "PostgreSQL DSN for real backends"
    )
    mongo_url: str = _setting(
        "AGORA_MONGO_URL", "mongodb://127.0.0.1:27017/?replicaSet=rs0",
        "MongoDB URL (a replica set: change streams)"
    )
    mongo_db: str = _setting("AGORA_MONGO_DB", "agora", "MongoDB database name")
    cassandra_contact_points: str = _setting("AGORA_CASSANDRA_CONTACT_POINTS", "127.0.0.1",
                                             "comma-separated hosts")
    cassandra_port: int = _setting("AGORA_CASSANDRA_PORT", 9042, "CQL native port")
    cassandra_protocol_version: int = _setting(
        "AGORA_CASSANDRA_PROTOCOL_VERSION", 5,
        "CQL native protocol (5 or 4 for Cassandra 4.x/5.x; 3 for the legacy 2.1)"
    )
    cassandra_keyspace: str = _setting("AGORA_CASSANDRA_KEYSPACE", "agora",
                                       "keyspace the mesh creates and uses")
    service_api_key: str = _setting(
        "AGORA_SERVICE_API_KEY", "",
        "the service credential internal calls send as x-api-key (operators: X-Api-Key via the bridge); "
        "`agora up` makes a random one when unset; every process of a split mesh needs the same"
    )
    tls_cert: str = _setting("AGORA_TLS_CERT", "",
                             "PEM certificate chain: gRPC servers and the bridge serve TLS only")
    tls_key: str = _setting("AGORA_TLS_KEY", "", "PEM private key for AGORA_TLS_CERT")
    tls_ca: str = _setting(
        "AGORA_TLS_CA", "",
        "PEM roots clients (channels between services, the bridge) trust; set = TLS to upstreams"
    )
    login_rate: float = _setting(
        "AGORA_LOGIN_RATE", 10.0,
        "login/sign-up attempts per minute per client address at the bridge (0 = off)"
    )
    write_rate: float = _setting(
        "AGORA_WRITE_RATE", 50.0, "writes per second per client address at the bridge, bursts of 4x (0 = off)"
    )
    trusted_proxies: str = _setting(
        "AGORA_TRUSTED_PROXIES", "",
        "comma-separated addresses/CIDRs of proxies whose X-Forwarded-For/-Proto the bridge believes; "
        "empty = none: every limit keys on the TCP peer", _NETWORKS,
    )
    http_max_header_bytes: int = _setting(
        "AGORA_HTTP_MAX_HEADER_BYTES", 32 * 1024,
        "largest request head (request line + headers) the bridge reads; more is answered 431", _POSITIVE,
    )
    http_max_metadata_bytes: int = _setting(
        "AGORA_HTTP_MAX_METADATA_BYTES", 7 * 1024,
        "largest gRPC metadata (Authorization, Grpc-Metadata-*, ...) the bridge forwards, counted as HTTP/2 "
        "does (name + value + 32 per entry); more is answered 431 (gRPC's own limit is 8 KiB)", _POSITIVE,
    )
    http_header_timeout: float = _setting(
        "AGORA_HTTP_HEADER_TIMEOUT", 10.0,
        "seconds a connection gets to send a complete request head (from connect, or from its first byte); "
        "then 408 and closed", _POSITIVE,
    )
    http_idle_timeout: float = _setting(
        "AGORA_HTTP_IDLE_TIMEOUT", 5.0, "seconds an idle keep-alive connection stays open between requests",
        _POSITIVE,
    )
    http_max_connections: int = _setting(
        "AGORA_HTTP_MAX_CONNECTIONS", 10_000,
        "open HTTP/WebSocket connections the bridge serves in all; past it 503 + Retry-After (0 = no cap)",
        _NOT_NEGATIVE,
    )
    http_max_connections_per_client: int = _setting(
        "AGORA_HTTP_MAX_CONNECTIONS_PER_CLIENT", 1024,
        "open connections per client address (trusted proxies exempt); "
        "past it 429 + Retry-After (0 = no cap)",
        _NOT_NEGATIVE,
    )
    ws_frame_rate: float = _setting("AGORA_WS_FRAME_RATE", 100.0,
                                    "inbound WebSocket frames per second per connection")
    amqp_url: str = _setting("AGORA_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F",
                             "RabbitMQ URL for real backends")
    polls_tally_in_process: bool = _setting(
        "AGORA_POLLS_TALLY_IN_PROCESS", True,
        "run the polls tally consumer inside the polls server "
        "(false: run it apart, `python -m services.polls.handlers`)"
    )
    orders_payment_timeout: float = _setting(
        "AGORA_ORDERS_PAYMENT_TIMEOUT", 900.0,
        "seconds a placed order waits for its payment (900 = 15 min), then fails as payment_timed_out",
        _POSITIVE,
    )
    payments_schema: str = _setting(
        "AGORA_PAYMENTS_SCHEMA", "payments", "PostgreSQL schema of the payments store (real backends)"
    )
    payments_max_attempts: int = _setting(
        "AGORA_PAYMENTS_MAX_ATTEMPTS", 4,
        "provider calls per charge, the first included, before the payment fails",
        _POSITIVE,
    )
    payments_retry_delay: float = _setting(
        "AGORA_PAYMENTS_RETRY_DELAY", 0.5,
        "seconds before a charge's 2nd attempt; doubles per attempt (at most 30 s)",
        _NOT_NEGATIVE,
    )
    payments_attempt_timeout: float = _setting(
        "AGORA_PAYMENTS_ATTEMPT_TIMEOUT", 5.0,
        "seconds the payment provider gets to answer one attempt (then: retry)",
        _POSITIVE,
    )
    notifications_schema: str = _setting(
        "AGORA_NOTIFICATIONS_SCHEMA", "notifications",
        "PostgreSQL schema of the notifications store (real backends)"
    )
    notifications_max_attempts: int = _setting(
        "AGORA_NOTIFICATIONS_MAX_ATTEMPTS", 6,
        "tries per e-mail/SMS, the first included, before it is marked FAILED",
        _POSITIVE,
    )
    notifications_retry_delay: float = _setting(
        "AGORA_NOTIFICATIONS_RETRY_DELAY", 2.0,
        "seconds before a notification's 2nd try; doubles per try (at most 600 s)", _NOT_NEGATIVE,
    )
    mail_sink: str = _setting(
        "AGORA_MAIL_SINK", "auto",
        "where notification e-mail goes: smtp (AGORA_SMTP_HOST), maildir (AGORA_DATA_DIR/mail, read it with "
        "`agora mail list|show`), or auto: maildir with embedded backends, smtp with real ones",
    )
    smtp_host: str = _setting(
        "AGORA_SMTP_HOST", "127.0.0.1", "SMTP relay notifications hand e-mail to (plain SMTP, no login)"
    )
    smtp_port: int = _setting("AGORA_SMTP_PORT", 25, "port of AGORA_SMTP_HOST", _PORT)
    smtp_from: str = _setting("AGORA_SMTP_FROM", "Agora <no-reply@agora.local>",
                              "From: header of notification e-mails")
    smtp_timeout: float = _setting(
        "AGORA_SMTP_TIMEOUT", 10.0,
        "seconds to connect to and talk with the relay, per e-mail (then: retry)", _POSITIVE
    )
    targets: Mapping[str, str] = field(
        default_factory=dict,
        metadata={
            "env": "AGORA_<DOMAIN>_TARGET",
            "help": "where to reach a domain, e.g. AGORA_POLLS_TARGET=polls:50052 "
                    "(default 127.0.0.1:<its port>)",
        },
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name == "targets":
                continue
            raw = env.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values["targets"] = {
            name: env[f"AGORA_{name.upper()}_TARGET"] for name in DOMAINS
            if env.get(f"AGORA_{name.upper()}_TARGET")
        }
        values.update(overrides)
        settings = cls(**values)
        if settings.backends not in ("embedded", "real"):
            raise ValueError(f"AGORA_BACKENDS must be 'embedded' or 'real', not {settings.backends!r}")
        if settings.mail_sink not in ("auto", "smtp", "maildir"):
            raise ValueError(f"AGORA_MAIL_SINK must be 'auto', 'smtp' or 'maildir', not "
                             f"{settings.mail_sink!r}")
        return settings

    def target(self, domain: str) -> str:
        """host:port where `domain`'s gRPC server answers."""
        return self.targets.get(domain) or f"127.0.0.1:{self.port_of(domain)}"

    def metrics_port_for(self, domain: str | None) -> int | None:
        """Where this process serves /metrics: `domain` alone, or every domain (None); None = off.
        Unless AGORA_METRICS_PORT says otherwise: 9464 (+ the port offset) for `agora up`, the
        process's gRPC port + 10000 for `agora serve <domain>` (0, any free port, past 65535)."""
        if self.metrics_port < 0:
            return None
        if self.metrics_port:
            return self.metrics_port
        port = METRICS_PORT + self.port_offset if domain is None else (
            self.grpc_port or self.port_of(domain)) + 10000
        return port if port <= 65535 else 0

    def port_of(self, domain: str) -> int:
        """The port `domain` listens on when this process serves it."""
        return DOMAINS[domain].port + self.port_offset

    @property
    def real(self) -> bool:
        return self.backends == "real"

    @property
    def mail_dir(self) -> Path | None:
        """The maildir notification e-mail is kept in, or None when it goes to the SMTP relay."""
        sink = self.mail_sink if self.mail_sink != "auto" else ("smtp" if self.real else "maildir")
        return self.data_dir / "mail" if sink == "maildir" else None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    kind = type(f.default)
    try:
        if kind is bool:
            word = raw.strip().lower()
            if word not in _TRUE + _FALSE:
                raise ValueError
            return word in _TRUE
        if kind in (int, float):
            value = kind(raw)
        elif isinstance(f.default, Path):
            return Path(raw)
        else:
            value = raw
    except ValueError:
        raise ValueError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from None
    check = f.metadata.get("check")
    if check is not None and not check[0](value):
        raise ValueError(f"{f.metadata['env']}={raw!r}: must be {check[1]}")
    return value


def describe() -> str:
    """One line per setting: variable, default, meaning (for --help)."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = "" if f.name == "targets" else f.default
        rows.append(f"  {f.metadata['env']:<34} {default!s:<44} {f.metadata['help']}")
    return "environment:\n" + "\n".join(rows)
