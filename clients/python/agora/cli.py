"""The `agora` command: run the mesh (`up`, `serve`) and look at it (`health`, `events`).

Exit codes scripts can rely on: 0 done, 1 the mesh answered but not as hoped (unhealthy,
not found...), 2 bad usage, 3 a service did not answer (unavailable).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

# The ten domains and their default ports; kept here too because the client package
# installs on its own, without the server code (services.kit.registry is the server's copy).
DOMAIN_PORTS = {
    "identity": 50051, "polls": 50052, "auctions": 50053, "chat": 50054, "customers": 50055,
    "catalog": 50056, "orders": 50057, "payments": 50058, "notifications": 50059, "audit": 50060,
}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


def _env_help() -> str:
    try:
        from services.kit.config import describe
    except ImportError:
        return "the server side (agora-mesh) is not installed: pip install agora-mesh"
    return describe()


def _server_settings(ns: argparse.Namespace):
    from services.kit.config import Settings

    overrides = {}
    if getattr(ns, "backends", None):
        overrides["backends"] = ns.backends
    if getattr(ns, "data_dir", None):
        from pathlib import Path

        overrides["data_dir"] = Path(ns.data_dir)
    return Settings.from_env(**overrides)


def cmd_up(ns: argparse.Namespace) -> int:
    from services.kit.launcher import up

    return up(_server_settings(ns))


def cmd_serve(ns: argparse.Namespace) -> int:
    from services.kit.launcher import serve

    return serve(ns.target, _server_settings(ns))


def _target(host: str, domain: str) -> str:
    import os

    offset = int(os.environ.get("AGORA_PORT_OFFSET") or 0)
    return os.environ.get(f"AGORA_{domain.upper()}_TARGET") or f"{host}:{DOMAIN_PORTS[domain] + offset}"


def cmd_health(ns: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    rows = []
    for domain in DOMAIN_PORTS:
        target = _target(ns.host, domain)
        with grpc.insecure_channel(target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=ns.timeout)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = exc.code().name
        rows.append({"service": domain, "target": target, "status": status})
    if ns.json:
        print(json.dumps(rows, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="agora health")
        for col in ("service", "target", "status"):
            table.add_column(col)
        for r in rows:
            colour = "green" if r["status"] == "SERVING" else "red"
            table.add_row(r["service"], r["target"], f"[{colour}]{r['status']}[/{colour}]")
        Console().print(table)
    if all(r["status"] == "SERVING" for r in rows):
        return EXIT_OK
    return EXIT_UNAVAILABLE if any(r["status"] == "UNAVAILABLE" for r in rows) else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agora", description="Agora: live polls, auctions, chat and commerce over gRPC.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server_command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=_env_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--backends", choices=["embedded", "real"], help="overrides AGORA_BACKENDS")
        p.add_argument("--data-dir", help="overrides AGORA_DATA_DIR")
        return p

    p = server_command("up", "start every service and the bridge in one process")
    p.set_defaults(func=cmd_up)
    p = server_command("serve", "run one domain's gRPC server, or the bridge (`gateway`)")
    p.add_argument("target", metavar="DOMAIN", choices=["gateway", *DOMAIN_PORTS],
                   help=f"gateway or one of: {', '.join(DOMAIN_PORTS)}")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("health", help="grpc.health.v1 status of every service at a glance")
    p.add_argument("--host", default="127.0.0.1", help="where the services listen (AGORA_<DOMAIN>_TARGET wins)")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per check")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_health)

    try:
        from services.kit.bus.cli import register as register_events
    except ImportError:
        pass  # client-only install: the dead-letter tools need the server side
    else:
        register_events(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
