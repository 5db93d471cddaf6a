"""`agora health`: every service's grpc.health.v1 status at a glance."""

from __future__ import annotations

import argparse

from agora.commands.context import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE, Invocation


def register(sub: argparse._SubParsersAction, leaf) -> None:
    p = leaf(sub, "health", "grpc.health.v1 status of every service at a glance")
    p.add_argument("--host", help="same as --target (kept for scripts written against it)")
    p.set_defaults(run=health)


def health(inv: Invocation) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

    from agora.client.mesh import resolve_targets

    ns = inv.ns
    timeout = getattr(ns, "timeout", None) or 2.0
    rows = []
    for domain, target in resolve_targets(ns.host or inv.target).items():
        with grpc.insecure_channel(target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                  timeout=timeout)
                status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.RpcError as exc:
                status = exc.code().name  # type: ignore[attr-defined]
        rows.append({"service": domain, "target": target, "status": status})
    if inv.json:
        inv.emit(rows)
    else:
        from rich.table import Table

        table = Table(title="agora health")
        for column in ("service", "target", "status"):
            table.add_column(column)
        for r in rows:
            colour = "green" if r["status"] == "SERVING" else "red"
            table.add_row(r["service"], r["target"], f"[{colour}]{r['status']}[/{colour}]")
        inv.console.print(table)
    if all(r["status"] == "SERVING" for r in rows):
        return EXIT_OK
    return (EXIT_UNAVAILABLE if any(r["status"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED") for r in rows)
            else EXIT_FAILED)
