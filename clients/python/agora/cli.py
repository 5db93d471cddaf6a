"""The `agora` command: run the mesh (`up`, `serve`), look at it (`health`, `events`), use it (every domain).

    agora login alice                       # session token saved to ~/.config/agora/config.toml (0600)
    agora polls create "Lunch?" Pizza Sushi
    agora polls watch POLL_ID               # live bars
    agora auctions watch AUCTION_ID         # live bid ladder
    agora events tail --type 'orders.*'     # live, filtered audit log

Tables by default, `--json` for scripts. Exit codes: see `agora.commands.context` (0 ok,
1 refused/not found, 2 usage, 3 unavailable, 4 unauthenticated, 130 interrupted).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from agora.client.mesh import DOMAINS
from agora.commands.context import (
    ENV_HELP,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    Invocation,
    Refused,
    UsageError,
    add_common_options,
)

# Kept for scripts that imported them from here.
DOMAIN_PORTS = {name: d.port for name, d in DOMAINS.items()}
EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 0, 1, 3, 4


# Commands the server distribution (agora-mesh) adds to this one, found through its entry points so the
# client never imports server code: the entry point's name is the top-level command, its value a
# `register(subparsers)`. `up` and `serve` are listed first, as stand-ins when the server is absent.
SERVER_COMMANDS = "agora.commands"
_SERVER_RUNS = {"up": "start every service and the bridge in one process",
                "serve": "run one domain's gRPC server, or the bridge (`gateway`)"}
NOT_INSTALLED = "the server side (agora-mesh) is not installed: pip install agora-mesh"


def _add_server_command(sub: argparse._SubParsersAction, entry: EntryPoint | None) -> str | None:
    """Add the server's command; None once added, else why it could not be."""
    if entry is None:
        return NOT_INSTALLED
    try:
        register = entry.load()
    except ImportError as error:  # a broken server install must not take the client's verbs with it
        return (f"the server side (agora-mesh) is installed but its `{entry.name}` command "
                f"does not load: {error}")
    register(sub)
    return None


def _stand_in(sub: argparse._SubParsersAction, name: str, help: str, why: str) -> None:
    """`agora up` and `agora serve` without the server side: their --help and their run say why."""
    parser = sub.add_parser(name, help=help, description=help, epilog=why)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def refuse(ns: argparse.Namespace) -> int:
        print(f"agora {name}: {why}", file=sys.stderr)
        return EXIT_USAGE

    parser.set_defaults(func=refuse)


def _leaf(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A client verb: common connection/output options, exit codes and environment in --help."""
    parser = subparsers.add_parser(name, help=help, description=help,
                                   epilog=f"{EXIT_CODES_HELP}\n\n{ENV_HELP}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_options(parser, top_level=False)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from agora.commands import auctions, chat, events, health, identity, orders, polls

    parser = argparse.ArgumentParser(
        prog="agora", description="Agora: live polls, auctions, chat and commerce over gRPC.",
        epilog=f"{EXIT_CODES_HELP}\n\n{ENV_HELP}", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    server = {entry.name: entry for entry in entry_points(group=SERVER_COMMANDS)}
    for name, help in _SERVER_RUNS.items():
        why = _add_server_command(sub, server.pop(name, None))
        if why is not None:
            _stand_in(sub, name, help, why)

    health.register(sub, _leaf)
    identity.register(sub, _leaf)
    polls.register(sub, _leaf)
    auctions.register(sub, _leaf)
    chat.register(sub, _leaf)
    orders.register(sub, _leaf)

    if _add_server_command(sub, server.pop("events", None)) is not None:  # `events dead-letters ...`
        sub.add_parser("events", help="the mesh's events: tail the audit trail")
    events.register(sub.choices["events"], _leaf)
    for name in sorted(server):  # `mail` (it reads the embedded mail sink), and any other the server adds
        _add_server_command(sub, server[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not hasattr(ns, "run"):  # the server's commands (up, serve, events dead-letters, mail) and stand-ins
        try:
            return ns.func(ns)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    invocation = Invocation(ns)
    try:
        return ns.run(invocation)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except (UsageError, Refused) as error:
        return invocation.report(error)
    except Exception as error:  # noqa: BLE001 - AgoraError and friends become an exit code, not a trace
        from agora.client.errors import AgoraError

        if isinstance(error, AgoraError):
            return invocation.report(error)
        raise
    finally:
        invocation.close()


if __name__ == "__main__":
    sys.exit(main())
