"""The server's commands (`up`, `serve`; `events dead-letters` and `mail` come from their own modules),
and `agora-mesh`, the console script that has them all.

The client's `agora` finds each through this distribution's `agora.commands` entry points (root
pyproject.toml: the entry point's name is the top-level command, its value a `register(subparsers)`),
so it offers them without importing server code. Each leaf sets `func(args) -> exit code`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130  # as the client's `agora` (agora.commands.context)


def _server_settings(ns: argparse.Namespace):
    from services.kit.config import Settings

    overrides = {}
    if getattr(ns, "backends", None):
        overrides["backends"] = ns.backends
    if getattr(ns, "data_dir", None):
        from pathlib import Path

        overrides["data_dir"] = Path(ns.data_dir)
    return Settings.from_env(**overrides)


def _up(ns: argparse.Namespace) -> int:
    from services.mesh.launcher import up

    return up(_server_settings(ns))


def _serve(ns: argparse.Namespace) -> int:
    from services.mesh.launcher import serve

    return serve(ns.target, _server_settings(ns), workers=ns.workers)


def _server_command(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A command that runs servers: its --help lists every AGORA_* setting."""
    from services.kit.config import describe

    parser = subparsers.add_parser(name, help=help, description=help, epilog=describe(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", choices=["embedded", "real"], help="overrides AGORA_BACKENDS")
    parser.add_argument("--data-dir", help="overrides AGORA_DATA_DIR")
    return parser


def register_up(subparsers: argparse._SubParsersAction) -> None:
    parser = _server_command(subparsers, "up", "start every service and the bridge in one process "
                             "(one bridge in the same loop; several bridge processes on one port are "
                             "`agora serve gateway --workers N`)")
    parser.set_defaults(func=_up)


def register_serve(subparsers: argparse._SubParsersAction) -> None:
    from services.kit.registry import DOMAINS

    parser = _server_command(subparsers, "serve", "run one domain's gRPC server, or the bridge (`gateway`)")
    parser.add_argument("target", metavar="DOMAIN", choices=["gateway", *DOMAINS],
                        help=f"gateway or one of: {', '.join(DOMAINS)}")
    parser.add_argument("--workers", type=_positive, metavar="N",
                        help="gateway only: N bridge processes on the one HTTP port (SO_REUSEPORT, Linux), "
                             "supervised by this one (default: AGORA_GATEWAY_WORKERS, 1)")
    parser.set_defaults(func=_serve)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    from services.mesh import dead_letters
    from services.notifications import mail_cli

    parser = argparse.ArgumentParser(
        prog="agora-mesh", description="Agora's server side: run the mesh, and the operators' commands "
        "(the client's `agora` offers the same ones next to its own when both are installed).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_up(sub)
    register_serve(sub)
    dead_letters.register(sub)
    mail_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
