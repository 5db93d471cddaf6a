"""`python -m gateway --descriptors FILE --upstream SERVICE=HOST:PORT ...` serves the bridge alone."""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources

from gateway.server import serve_gateway
from services.kit.config import Settings


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
    args = parser.parse_args()
    if args.descriptors:
        with open(args.descriptors, "rb") as f:
            blob = f.read()
    else:
        blob = importlib.resources.files("agora").joinpath("descriptors.binpb").read_bytes()
    upstreams = dict(item.split("=", 1) for item in args.upstream) or {"*": "127.0.0.1:50051"}
    asyncio.run(
        serve_gateway(blob, upstreams, args.host, args.port, default_timeout=args.timeout,
                      cors_origins=args.cors_origin, log_level="info",
                      csrf_key=settings.csrf_key.encode() or None, edge_key=settings.service_api_key)
    )


if __name__ == "__main__":
    main()
