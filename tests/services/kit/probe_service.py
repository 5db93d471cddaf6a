"""A tiny service for the kit's tests: slow, failing and streaming methods over raw bytes.

Run as a script it serves on the given port through the real launcher (signals and all),
which is how the shutdown test drives SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from services.kit import errors
from services.kit.interceptors import remaining
from services.kit.registry import Domain
from services.kit.server import ServiceSpec

DOMAIN = Domain("probe", "agora.probe.v1.ProbeService", 0)
cancelled = asyncio.Event()  # set when the slow handler was cancelled (deadline enforced server-side)


async def slow(request: bytes, context) -> bytes:
    seconds = float(request.decode() or "1")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.set()
        raise
    return b"done"


async def crash(request: bytes, context) -> bytes:
    raise KeyError("secret-internal-detail")


async def db_down(request: bytes, context) -> bytes:
    import psycopg2

    raise psycopg2.OperationalError("could not connect to server: Connection refused (10.1.2.3)")


async def invalid(request: bytes, context) -> bytes:
    raise errors.InvalidArgument.field("options", "a poll needs at least 2 options")


async def budget(request: bytes, context) -> bytes:
    """Answers how many seconds the kit says this call may still spend downstream."""
    return f"{remaining():.3f}".encode()


async def whoami(request: bytes, context) -> bytes:
    from services.kit.auth import caller

    found = caller()
    return found.username.encode() if found else b"anonymous"


async def private(request: bytes, context) -> bytes:
    from services.kit.auth import require_caller

    return require_caller().user_id.encode()


async def internal(request: bytes, context) -> bytes:
    from services.kit.auth import internal_only

    internal_only(context)
    return b"internal"


async def mine(request: bytes, context) -> bytes:
    from services.kit.auth import owner_or_internal

    who = owner_or_internal(context)
    return who.user_id.encode() if who else b"internal"


async def ticks(request: bytes, context):
    n = 0
    while True:
        n += 1
        yield str(n).encode()
        await asyncio.sleep(0.05)


def spec(extra: dict | None = None) -> ServiceSpec:
    handlers = {
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "Invalid": grpc.unary_unary_rpc_method_handler(invalid),
        "DbDown": grpc.unary_unary_rpc_method_handler(db_down),
        "Budget": grpc.unary_unary_rpc_method_handler(budget),
        "Ticks": grpc.unary_stream_rpc_method_handler(ticks),
        "WhoAmI": grpc.unary_unary_rpc_method_handler(whoami),
        "Private": grpc.unary_unary_rpc_method_handler(private),
        "Internal": grpc.unary_unary_rpc_method_handler(internal),
        "Mine": grpc.unary_unary_rpc_method_handler(mine),
        **(extra or {}),
    }
    generic = grpc.method_handlers_generic_handler(DOMAIN.service, handlers)
    return ServiceSpec(domain=DOMAIN, register=lambda server: server.add_generic_rpc_handlers((generic,)))


async def _main(port: int) -> int:
    from services.kit.config import Settings
    from services.mesh.launcher import run

    async def build(runtime):
        return spec()

    settings = Settings.from_env(grpc_port=port, log_format="text")
    return await run(settings, [(DOMAIN, build)], gateway=False, stop=None,
                     announce=lambda line: print(line, flush=True))


if __name__ == "__main__":
    sys.exit(asyncio.run(_main(int(sys.argv[1]))))
