"""`agora events dead-letters list|replay|discard`: inspect and re-drive events consumers gave up on.

`agora` (through the `agora.commands` entry point `events`) and `agora-mesh` call
`register(subparsers)`; each leaf sets `func(args) -> exit code`.
Alone: `agora-mesh events dead-letters list [--group G] [--json]` (or `python -m services.mesh ...`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from services.kit.bus.admin import open_admin
from services.kit.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    events = subparsers.add_parser("events", help="the event bus")
    topics = events.add_subparsers(dest="events_command", required=True)
    dead = topics.add_parser("dead-letters", help="events a consumer group gave up on after N attempts")
    actions = dead.add_subparsers(dest="dead_letters_command", required=True)

    listing = actions.add_parser("list", help="show dead letters without removing them")
    listing.add_argument("--group", help="only this consumer group")
    listing.add_argument("--limit", type=int, default=1000)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(func=_run(_list))

    for name, verb in (("replay", "send back to their group for a fresh round of attempts"),
                       ("discard", "drop for good")):
        action = actions.add_parser(name, help=f"{verb}")
        action.add_argument("--group", help="only this consumer group")
        chosen = action.add_mutually_exclusive_group(required=True)
        chosen.add_argument("--id", action="append", dest="ids", metavar="ID", help="event id (repeatable)")
        chosen.add_argument("--all", action="store_true", help="every dead letter (of --group, if given)")
        action.set_defaults(func=_run(_replay if name == "replay" else _discard))


def _run(command):
    def run(args: argparse.Namespace) -> int:
        settings = Settings.from_env()
        if not settings.real:
            # The in-process bus keeps its dead letters in the serving process's memory.
            print("dead letters live on RabbitMQ; set AGORA_BACKENDS=real (the embedded bus keeps them "
                  "inside the running `agora` process)", file=sys.stderr)
            return 2
        return asyncio.run(_with_bus(settings, command, args))

    return run


async def _with_bus(settings: Settings, command, args: argparse.Namespace) -> int:
    # Dead-letter operations use a short-lived connection of their own; no need to start() the bus.
    return await command(open_admin(settings), args)


async def _list(bus, args: argparse.Namespace) -> int:
    letters = await bus.dead_letters(args.group, limit=args.limit)
    if args.json:
        for letter in letters:
            print(json.dumps(letter.as_dict()))
        return 0
    if not letters:
        print("no dead letters" + (f" for {args.group}" if args.group else ""))
        return 0
    print(f"{'ID':<36}  {'GROUP':<20}  {'TYPE':<28}  {'KEY':<16}  ATTEMPTS  ERROR")
    for x in letters:
        print(f"{x.id:<36}  {x.group:<20}  {x.type:<28}  {x.key:<16}  {x.attempts:>8}  {x.error}")
    return 0


async def _replay(bus, args: argparse.Namespace) -> int:
    count = await bus.replay_dead_letters(args.group, None if args.all else set(args.ids))
    print(f"replayed {count} dead letter(s)")
    return 0 if count or args.all else 1


async def _discard(bus, args: argparse.Namespace) -> int:
    count = await bus.discard_dead_letters(args.group, None if args.all else set(args.ids))
    print(f"discarded {count} dead letter(s)")
    return 0 if count or args.all else 1

