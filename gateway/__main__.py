"""`python -m gateway --descriptors FILE --upstream SERVICE=HOST:PORT ...` serves the bridge alone."""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.resources
import secrets
import sys

from gateway.server import serve_gateway
from services.kit.config import Settings


def read_descriptors(path: str | None) -> bytes:
    """The FileDescriptorSet at `path`, or the one installed with the client (agora/descriptors.binpb)."""
    if path:
        with open(path, "rb") as f:
            return f.read()
    return importlib.resources.files("agora").joinpath("descriptors.binpb").read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--descriptors", help="FileDescriptorSet file (default: agora/descriptors.binpb)")
    parser.add_argument("--upstream", action="append", default=[], metavar="SERVICE=TARGET",
                        help="fully-qualified service (or *) = host:port; repeatable")
    settings = Settings.from_env()
    parser.add_argument("--host", default=settings.host,
                        help="address to bind (default: AGORA_HOST, %(default)s)")
    parser.add_argument("--port", type=int, default=settings.http_port,
                        help="HTTP port (default: AGORA_HTTP_PORT, %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="default deadline for unary calls, s")
    parser.add_argument("--cors-origin", action="append", default=[])
    parser.add_argument("--workers", type=int, default=settings.gateway_workers, metavar="N",
                        help="bridge processes on the one port (SO_REUSEPORT, Linux; default: "
                             "AGORA_GATEWAY_WORKERS, %(default)s)")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    blob = read_descriptors(args.descriptors)
    upstreams = dict(item.split("=", 1) for item in args.upstream) or {"*": "127.0.0.1:50051"}
    options = dict(default_timeout=args.timeout, cors_origins=args.cors_origin, log_level="info",
                   csrf_key=settings.csrf_key.encode() or None, edge_key=settings.service_api_key)
    if args.workers == 1:
        asyncio.run(serve_gateway(blob, upstreams, args.host, args.port, **options))
        return
    from gateway.workers import WorkersFailed, bridge_worker, supervise

    # one CSRF key for all: a cookie one worker signs, another checks
    options["csrf_key"] = options["csrf_key"] or secrets.token_bytes(32)
    try:
        # the workers read the descriptors themselves (a path is a small message to each)
        code = supervise(functools.partial(bridge_worker, args.descriptors, upstreams, args.host, options),
                         args.workers, host=args.host, port=args.port, grace=5.0 + 15)
    except WorkersFailed as exc:
        print(f"python -m gateway: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
