"""`agora mail list|show`: the e-mail the embedded run's notifications kept in its mail sink.

With embedded backends (or AGORA_MAIL_SINK=maildir) notifications write e-mail to the maildir
AGORA_DATA_DIR/mail instead of an SMTP relay; these commands read it, from any process.
The lead's `agora` command calls `register(subparsers)`; each leaf sets `func(args) -> exit code`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.kit.config import Settings
from services.notifications.senders import read_mail


def register(subparsers: argparse._SubParsersAction) -> None:
    mail = subparsers.add_parser("mail", help="e-mail kept by the embedded mail sink (AGORA_DATA_DIR/mail)")
    mail.add_argument("--data-dir", help="overrides AGORA_DATA_DIR")
    verbs = mail.add_subparsers(dest="mail_command", required=True)
    listing = verbs.add_parser("list", help="one line per e-mail, oldest first")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_list)
    show = verbs.add_parser("show", help="one e-mail, headers and body")
    show.add_argument("id", help="the notification id (first column of `agora mail list`)")
    show.set_defaults(func=_show)


def _mail_dir(args: argparse.Namespace) -> Path:
    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    settings = Settings.from_env(**overrides)
    directory = settings.mail_dir or settings.data_dir / "mail"
    if settings.mail_dir is None and not directory.is_dir():
        print(f"no mail sink in {directory}: with these settings e-mail goes to the SMTP relay "
              f"{settings.smtp_host}:{settings.smtp_port} (the sink is used with embedded backends or "
              "AGORA_MAIL_SINK=maildir)", file=sys.stderr)
    return directory


def _list(args: argparse.Namespace) -> int:
    directory = _mail_dir(args)
    for nid, message in read_mail(directory):
        row = {"id": nid, "date": str(message["Date"]), "to": str(message["To"]),
               "subject": str(message["Subject"])}
        print(json.dumps(row) if args.json else "\t".join(row.values()))
    return 0


def _show(args: argparse.Namespace) -> int:
    directory = _mail_dir(args)
    for nid, message in read_mail(directory):
        if nid == args.id:
            for header in ("From", "To", "Subject", "Date", "Message-ID"):
                print(f"{header}: {message[header]}")
            print()
            print(message.get_content().rstrip("\n"))
            return 0
    print(f"no e-mail for notification {args.id!r} in {directory} (see `agora mail list`)", file=sys.stderr)
    return 1
