"""`agora signup|login|logout|whoami`: accounts and the saved session."""

from __future__ import annotations

import argparse
import getpass
import sys

from agora.commands.context import EXIT_OK, Invocation, UsageError
from agora.commands.formats import as_json, when


def register(sub: argparse._SubParsersAction, leaf) -> None:
    p = leaf(sub, "signup", "create an account (then `agora login`)")
    p.add_argument("user_name")
    p.add_argument("--email", required=True)
    _password_options(p)
    p.add_argument("--bio", default="")
    p.set_defaults(run=signup)

    p = leaf(sub, "login", "sign in and save the session token (config file, mode 0600)")
    p.add_argument("user_name", nargs="?", help="user name (or --email)")
    p.add_argument("--email", default="")
    _password_options(p)
    p.set_defaults(run=login)

    p = leaf(sub, "logout", "revoke the saved session and forget it")
    p.add_argument("--all", action="store_true", help="revoke every session of the account")
    p.set_defaults(run=logout)

    p = leaf(sub, "whoami", "the signed-in user")
    p.set_defaults(run=whoami)


def _password_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--password", help="the password (prefer --password-stdin or the prompt: argv is visible)")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin")


def _password(ns: argparse.Namespace) -> str:
    if ns.password:
        return ns.password
    if ns.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        return getpass.getpass("password: ")
    raise UsageError("no password: pass --password-stdin (or --password) when stdin is not a terminal")


def signup(inv: Invocation) -> int:
    from agora.identity.v1 import identity_pb2

    ns = inv.ns
    reply = inv.client.identity.SignUp(identity_pb2.SignUpRequest(
        user_name=ns.user_name, email=ns.email, password=_password(ns), bio=ns.bio))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.console.print(f"created user [bold]{reply.user.user_name}[/bold] ({reply.user_id}); "
                          f"now `agora login {reply.user.user_name}`")
    return EXIT_OK


def login(inv: Invocation) -> int:
    from agora.commands.profile import save
    from agora.identity.v1 import identity_pb2

    ns = inv.ns
    if not ns.user_name and not ns.email:
        raise UsageError("name the account: `agora login USER_NAME` or `agora login --email EMAIL`")
    reply = inv.client.identity.Login(identity_pb2.LoginRequest(
        user_name=ns.user_name or "", email=ns.email, password=_password(ns)))
    values = {**inv.saved, "token": reply.session_token, "user_name": reply.user.user_name,
              "user_id": reply.user.id, "expires_at": when(reply.expires_at)}
    if getattr(ns, "target", None):
        values["target"] = ns.target
    save(inv.config_path, values)
    if inv.json:
        inv.emit({"user": as_json(reply.user), "expiresAt": reply.expires_at.ToJsonString(),
                  "config": str(inv.config_path)})
    else:
        inv.console.print(f"signed in as [bold]{reply.user.user_name}[/bold] until {when(reply.expires_at)}; "
                          f"session saved to {inv.config_path}")
    return EXIT_OK


def logout(inv: Invocation) -> int:
    from agora.commands.profile import save
    from agora.identity.v1 import identity_pb2

    inv.require_token()
    inv.client.identity.Logout(identity_pb2.LogoutRequest(all_sessions=inv.ns.all))
    if inv.saved.get("token"):
        save(inv.config_path, {k: v for k, v in inv.saved.items() if k not in ("token", "expires_at")})
    if inv.json:
        inv.emit({"signedOut": True})
    else:
        inv.console.print("signed out")
    return EXIT_OK


def whoami(inv: Invocation) -> int:
    from agora.identity.v1 import identity_pb2

    inv.require_token()
    reply = inv.client.identity.WhoAmI(identity_pb2.WhoAmIRequest())
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table(None, ["user", "id", "email", "session until"],
                  [[reply.user.user_name, reply.user.id, reply.user.email, when(reply.session_expires_at)]])
    return EXIT_OK
