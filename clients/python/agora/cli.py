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

from agora.client.mesh import DOMAINS
from agora.commands.context import (
    ENV_HELP,
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    Invocation,
    Refused,
    UsageError,
    add_common_options,
)

# Kept for scripts that imported them from here.
DOMAIN_PORTS = {name: d.port for name, d in DOMAINS.items()}
EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 0, 1, 3, 4


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


def _leaf(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A client verb: common connection/output options, exit codes and environment in --help."""
    parser = subparsers.add_parser(name, help=help, description=help, epilog=f"{EXIT_CODES_HELP}\n\n{ENV_HELP}",
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

    def server_command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=_env_help(),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--backends", choices=["embedded", "real"], help="overrides AGORA_BACKENDS")
        p.add_argument("--data-dir", help="overrides AGORA_DATA_DIR")
        return p

    p = server_command("up", "start every service and the bridge in one process")
    p.set_defaults(func=cmd_up)
    p = server_command("serve", "run one domain's gRPC server, or the bridge (`gateway`)")
    p.add_argument("target", metavar="DOMAIN", choices=["gateway", *DOMAINS],
                   help=f"gateway or one of: {', '.join(DOMAINS)}")
    p.set_defaults(func=cmd_serve)

    health.register(sub, _leaf)
    identity.register(sub, _leaf)
    polls.register(sub, _leaf)
    auctions.register(sub, _leaf)
    chat.register(sub, _leaf)
    orders.register(sub, _leaf)

    try:
        from services.kit.bus.cli import register as register_dead_letters
    except ImportError:
        sub.add_parser("events", help="the mesh's events: tail the audit trail")
    else:
        register_dead_letters(sub)  # `events dead-letters ...` needs the server side
    events.register(sub.choices["events"], _leaf)
    try:
        from services.notifications.mail_cli import register as register_mail
    except ImportError:
        pass  # `mail` reads the embedded mail sink: only with the server side installed
    else:
        register_mail(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if not hasattr(ns, "run"):  # server-side commands: up, serve, events dead-letters, mail
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
