"""What every verb shares: options, the client, output (tables or --json), exit codes.

Exit codes (documented in `agora --help` and the README):
  0  done
  1  the mesh refused or could not do it (NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS,
     PERMISSION_DENIED, ABORTED, ...; also some failed rows of a bulk vote, or unhealthy services)
  2  usage: the command line or its input is wrong (argparse, a malformed amount or file,
     or the server's INVALID_ARGUMENT / OUT_OF_RANGE)
  3  unavailable: a service did not answer (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  unauthenticated: no session, or the session expired or was revoked (UNAUTHENTICATED)
  130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING, Any

import grpc

from agora.client.errors import AgoraError

if TYPE_CHECKING:
    from rich.console import Console

    from agora.client import Agora

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_UNAUTHENTICATED = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """exit codes:
  0  done
  1  refused or failed (not found, failed precondition, already exists, permission denied, ...)
  2  usage: bad command line or input (also the server's INVALID_ARGUMENT / OUT_OF_RANGE)
  3  unavailable: a service did not answer (UNAVAILABLE, DEADLINE_EXCEEDED)
  4  unauthenticated: sign in with `agora login` (no session, or it expired or was revoked)
  130 interrupted"""

ENV_HELP = """environment:
  AGORA_TARGET           host of every service (or host:port of one gRPC proxy), like --target
  AGORA_<DOMAIN>_TARGET  host:port of one domain, e.g. AGORA_POLLS_TARGET=polls:50052
  AGORA_PORT_OFFSET      added to every domain's default port (50051..50060)
  AGORA_TOKEN            session token, like --token (default: the one `agora login` saved)
  AGORA_CONFIG           the config file (default ~/.config/agora/config.toml, mode 0600)"""


class UsageError(Exception):
    """The command line or its input is wrong (exit 2)."""


class Refused(Exception):
    """A local check failed in a way that is not a usage error (exit 1 unless `code` says otherwise)."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(code: grpc.StatusCode) -> int:
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return EXIT_UNAUTHENTICATED
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return EXIT_UNAVAILABLE
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE):
        return EXIT_USAGE
    return EXIT_FAILED


def add_common_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The options every verb takes; on leaves they default to SUPPRESS so the top level's stay."""
    default = None if top_level else argparse.SUPPRESS
    group = parser.add_argument_group("connection and output")
    group.add_argument("--target", default=default, metavar="HOST[:PORT]",
                       help="host of every service (each on its own port), or host:port of one gRPC proxy")
    group.add_argument("--token", default=default,
                       help="session token (default: AGORA_TOKEN, then `agora login`'s)")
    group.add_argument("--config", default=default, metavar="PATH",
                       help="config file (default: AGORA_CONFIG or "
                       "~/.config/agora/config.toml)")
    group.add_argument("--timeout", type=float, default=default, metavar="SECONDS",
                       help="deadline of each call (default 10)")
    group.add_argument("--json", action="store_true", default=False if top_level else argparse.SUPPRESS,
                       help="machine-readable output (one JSON document, or one per line for live views)")


class Invocation:
    """One run of one verb: the parsed options, a lazily opened client, and the output."""

    def __init__(self, ns: argparse.Namespace) -> None:
        self.ns = ns
        self.json: bool = bool(getattr(ns, "json", False))

    # -- configuration

    @cached_property
    def config_path(self):
        from agora.commands.profile import config_path

        return config_path(getattr(self.ns, "config", None))

    @cached_property
    def saved(self) -> dict[str, str]:
        from agora.commands.profile import load

        return load(self.config_path)

    @property
    def target(self) -> str | None:
        return (getattr(self.ns, "target", None) or os.environ.get("AGORA_TARGET")
                or self.saved.get("target") or None)

    @property
    def token(self) -> str | None:
        explicit = getattr(self.ns, "token", None)
        if explicit is not None:
            return explicit or None  # --token "" calls anonymously even when a session is saved
        return os.environ.get("AGORA_TOKEN") or self.saved.get("token") or None

    @cached_property
    def client(self) -> Agora:
        from agora.client import Agora

        timeout = getattr(self.ns, "timeout", None)
        return Agora(self.target, token=self.token, timeout=timeout if timeout is not None else 10.0)

    def require_token(self) -> None:
        if not self.token:
            raise Refused("not signed in: run `agora login` (or pass --token / set AGORA_TOKEN)",
                          EXIT_UNAUTHENTICATED)

    # -- output

    @cached_property
    def console(self) -> Console:
        from rich.console import Console

        console = Console(highlight=False, soft_wrap=True)
        if not console.is_terminal and not os.environ.get("COLUMNS"):
            console.width = 160  # piped into a file or a pager: room for full ids and timestamps
        return console

    @cached_property
    def err_console(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    def emit(self, document: Any) -> None:
        """Print one JSON document (the --json output of a one-shot verb)."""
        print(json.dumps(document, indent=2, sort_keys=False))

    def emit_line(self, document: Any) -> None:
        """Print one JSON object per line (the --json output of a live view), flushed at once."""
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def table(self, title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            # ids are what people copy into the next command: never cut them short
            table.add_column(column, no_wrap=column == "id", overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        self.console.print(table)

    def note(self, text: str) -> None:
        """A human remark on stderr (never mixed into --json stdout)."""
        self.err_console.print(text)

    def report(self, error: BaseException) -> int:
        """Print `error` for a person (or as JSON) on stderr and return the exit code."""
        if isinstance(error, AgoraError):
            code = exit_code_for(error.code)
            if self.json:
                print(json.dumps({"error": error.as_dict()}), file=sys.stderr)
            else:
                print(f"agora: {error.code.name}: {error.message}", file=sys.stderr)
                for field, problem in error.field_violations.items():
                    print(f"  {field}: {problem}", file=sys.stderr)
                if error.code == grpc.StatusCode.UNAUTHENTICATED:
                    print("  sign in with `agora login`", file=sys.stderr)
                if error.code == grpc.StatusCode.UNAVAILABLE:
                    print("  is the mesh running? "
                          "(`agora up`; check --target / AGORA_TARGET / AGORA_PORT_OFFSET)",
                          file=sys.stderr)
            return code
        code = error.code if isinstance(error, Refused) else EXIT_USAGE
        if self.json:
            name = {EXIT_USAGE: "USAGE", EXIT_UNAUTHENTICATED: "UNAUTHENTICATED"}.get(code, "FAILED")
            print(json.dumps({"error": {"code": name, "message": str(error), "details": []}}),
                  file=sys.stderr)
        else:
            print(f"agora: {error}", file=sys.stderr)
        return code

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
