"""`agora events tail`: the audit trail as a live, filtered log (audit's WatchEvents)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agora.commands.context import EXIT_OK, Invocation
from agora.commands.formats import as_json, when


def register(events: argparse.ArgumentParser, leaf) -> None:
    """Add `tail` to the `events` command (which the server side may have created with `dead-letters`)."""
    verbs = next((a for a in events._actions if isinstance(a, argparse._SubParsersAction)), None)
    if verbs is None:
        verbs = events.add_subparsers(dest="events_command", required=True, metavar="VERB")
    p = leaf(verbs, "tail", "follow the mesh's events live (the audit trail), filtered")
    p.add_argument("--type", dest="type_pattern", default="", metavar="PATTERN",
                   help="type or pattern, e.g. 'orders.*', '*.created' (default: every event)")
    p.add_argument("--key", default="", help="only events with this key (e.g. an order id)")
    p.add_argument("--source", default="", help="only events from this source (e.g. polls)")
    p.add_argument("--from", dest="resume_from", type=int, default=0, metavar="SEQUENCE",
                   help="replay the matching events recorded after this sequence first (default: live only)")
    p.add_argument("--limit", type=int, default=0, help="stop after this many events (0 = until Ctrl-C)")
    p.set_defaults(run=tail)


_COLOURS = {"identity": "cyan", "polls": "green", "auctions": "magenta", "chat": "blue", "orders": "yellow",
            "payments": "red", "catalog": "bright_green", "customers": "bright_blue"}


def _line(event: Any) -> str:
    from rich.markup import escape

    colour = _COLOURS.get(event.type.split(".", 1)[0], "white")
    payload = json.dumps(as_json(event.payload), separators=(",", ":")) if event.payload.fields else ""
    if len(payload) > 120:
        payload = payload[:117] + "..."
    key = f" key={escape(event.key)}" if event.key else ""
    return (f"[dim]{event.sequence:>6} {when(event.occurred_at)[11:]}[/dim] "
            f"[{colour}]{escape(event.type)}[/{colour}]"
            f" [dim]{escape(event.source)}{key}[/dim] {escape(payload)}")


def tail(inv: Invocation) -> int:
    ns = inv.ns
    events = inv.client.watch_events(ns.type_pattern, key=ns.key, resume_from=ns.resume_from,
                                     on_retry=lambda e, n, d: inv.note(
                                         f"[yellow]connection lost ({e.code.name}); resuming[/yellow]"))
    if not inv.json:
        what = ns.type_pattern or "every event"
        inv.note(f"[dim]following {what}" + (f" with key {ns.key}" if ns.key else "")
                 + (f" from {ns.source}" if ns.source else "") + " · Ctrl-C stops[/dim]")
    shown = 0
    for update in events:
        if ns.source and update.event.source != ns.source:
            continue
        if inv.json:
            inv.emit_line(as_json(update.event))
        else:
            inv.console.print(_line(update.event), soft_wrap=True)
        shown += 1
        if ns.limit and shown >= ns.limit:
            break
    return EXIT_OK
