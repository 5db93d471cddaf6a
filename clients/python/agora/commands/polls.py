"""`agora polls create|list|show|vote|watch|close`; `watch` draws the results as live bars."""

from __future__ import annotations

import argparse
import csv
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agora.client.errors import AgoraError
from agora.commands.context import EXIT_FAILED, EXIT_OK, Invocation, UsageError
from agora.commands.formats import as_json, enum_name, parse_duration, timestamp_in, when

POLICIES = {"unrestricted": 3, "one-per-user": 1, "one-per-voter-key": 2}


def register(sub: argparse._SubParsersAction, leaf) -> None:
    polls = sub.add_parser("polls", help="live polls: create, vote, watch the results")
    verbs = polls.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = leaf(verbs, "create", "open a poll")
    p.add_argument("question")
    p.add_argument("options", nargs="+", metavar="OPTION", help="two or more answers")
    p.add_argument("--policy", choices=list(POLICIES), default="unrestricted", help="who may vote, how often")
    p.add_argument("--allow-change", action="store_true", help="voters may change their vote")
    p.add_argument("--closes-in", metavar="DURATION", help="close by itself after e.g. 10m")
    p.set_defaults(run=create)

    p = leaf(verbs, "list", "polls, newest first")
    p.add_argument("--status", choices=["open", "closed"])
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    p.set_defaults(run=list_polls)

    p = leaf(verbs, "show", "a poll and its current results")
    p.add_argument("poll_id")
    p.set_defaults(run=show)

    p = leaf(verbs, "vote", "cast a vote (or many, from a CSV file)")
    p.add_argument("poll_id")
    p.add_argument("option", nargs="?", help="option index (0-based) or its exact text")
    p.add_argument("--voter-key", default="", help="the voter's key (one-per-voter-key polls)")
    p.add_argument("--from-file", metavar="CSV",
                   help="one vote per row: option[,voter_key] (header optional)")
    p.add_argument("--parallel", type=int, default=8,
                   help="votes in flight at once with --from-file (default 8)")
    p.set_defaults(run=vote)

    p = leaf(verbs, "watch", "live results as bars until the poll closes")
    p.add_argument("poll_id")
    p.add_argument("--limit", type=int, default=0, help="stop after this many updates (0 = until closed)")
    p.set_defaults(run=watch)

    p = leaf(verbs, "close", "close a poll (its creator only); results become final")
    p.add_argument("poll_id")
    p.set_defaults(run=close)


def _pb():
    from agora.polls.v1 import polls_pb2

    return polls_pb2


def _poll_row(poll: Any) -> list[Any]:
    pb = _pb()
    return [poll.id, poll.question, enum_name(poll.status, pb.PollStatus, "POLL_STATUS_"),
            enum_name(poll.vote_policy, pb.VotePolicy, "VOTE_POLICY_"), len(poll.options),
            when(poll.created_at)]


POLL_COLUMNS = ["id", "question", "status", "policy", "options", "created"]


def create(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    request = pb.CreatePollRequest(question=ns.question, options=ns.options, vote_policy=POLICIES[ns.policy],
                                   allow_change=ns.allow_change)
    if ns.closes_in:
        request.closes_at.CopyFrom(timestamp_in(parse_duration(ns.closes_in)))
    if ns.policy == "one-per-user":
        inv.require_token()
    reply = inv.client.polls.CreatePoll(request)
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table("poll created", POLL_COLUMNS, [_poll_row(reply.poll)])
    return EXIT_OK


def list_polls(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    status = {"open": pb.POLL_STATUS_OPEN, "closed": pb.POLL_STATUS_CLOSED}.get(ns.status or "", 0)
    polls: list[Any] = []
    token = ""
    while len(polls) < ns.limit:
        reply = inv.client.polls.ListPolls(pb.ListPollsRequest(page_size=min(ns.limit - len(polls), 500),
                                                               page_token=token, status=status))
        polls.extend(reply.polls)
        token = reply.next_page_token
        if not token:
            break
    if inv.json:
        inv.emit({"polls": [as_json(p) for p in polls]})
    else:
        inv.table(f"{len(polls)} poll(s)", POLL_COLUMNS, [_poll_row(p) for p in polls])
    return EXIT_OK


def show(inv: Invocation) -> int:
    reply = inv.client.polls.GetPoll(_pb().GetPollRequest(poll_id=inv.ns.poll_id))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table(None, POLL_COLUMNS, [_poll_row(reply.poll)])
        inv.console.print(results_view(reply.poll.question, reply.results))
    return EXIT_OK


def _option_index(options: list[Any], choice: str) -> int:
    if choice.strip().lstrip("-").isdigit():
        return int(choice)
    for option in options:
        if option.text == choice:
            return option.index
    raise UsageError(f"no option {choice!r}; options: " + ", ".join(f"{o.index}={o.text}" for o in options))


def vote(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    if ns.from_file:
        return _vote_from_file(inv)
    if ns.option is None:
        raise UsageError("name the option (index or text), or give --from-file CSV")
    options: list[Any] = []
    if not ns.option.strip().lstrip("-").isdigit():
        options = list(inv.client.polls.GetPoll(pb.GetPollRequest(poll_id=ns.poll_id)).poll.options)
    reply = inv.client.polls.CastVote(pb.CastVoteRequest(
        poll_id=ns.poll_id, option=_option_index(options, ns.option), voter_key=ns.voter_key))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        moved = f" (moved from option {reply.previous_option})" if reply.replaced_previous else ""
        inv.console.print(f"vote {reply.vote_id} counted for option {reply.option}{moved}")
    return EXIT_OK


def _read_votes(path: str, options: list[Any]) -> list[tuple[int, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if rows and rows[0][0].strip().lower() in ("option", "choice"):
        rows = rows[1:]
    votes = []
    for number, row in enumerate(rows, 1):
        try:
            votes.append((_option_index(options, row[0].strip()), row[1].strip() if len(row) > 1 else ""))
        except UsageError as exc:
            raise UsageError(f"{path} row {number}: {exc}") from None
    return votes


def _vote_from_file(inv: Invocation) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    pb, ns = _pb(), inv.ns
    poll = inv.client.polls.GetPoll(pb.GetPollRequest(poll_id=ns.poll_id)).poll
    votes = _read_votes(ns.from_file, list(poll.options))
    batch = uuid.uuid4().hex[:12]
    failures: dict[str, int] = {}

    def cast(numbered: tuple[int, tuple[int, str]]) -> str | None:
        number, (option, voter_key) = numbered
        try:  # one request id per row: the channel's retries of a row never count it twice
            inv.client.polls.CastVote(pb.CastVoteRequest(poll_id=ns.poll_id, option=option,
                                                         voter_key=voter_key,
                                                         request_id=f"{batch}-{number}"))
            return None
        except AgoraError as exc:
            return f"{exc.code.name}: {exc.message}"

    progress = Progress(TextColumn("voting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=inv.err_console, disable=inv.json or not inv.err_console.is_terminal)
    with progress, ThreadPoolExecutor(max(1, ns.parallel)) as pool:
        task = progress.add_task("votes", total=len(votes))
        for failure in pool.map(cast, enumerate(votes)):
            if failure:
                failures[failure] = failures.get(failure, 0) + 1
            progress.advance(task)
    failed = sum(failures.values())
    summary = {"pollId": ns.poll_id, "votes": len(votes), "accepted": len(votes) - failed, "failed": failed,
               "failures": failures}
    if inv.json:
        inv.emit(summary)
    else:
        inv.console.print(f"{len(votes) - failed} of {len(votes)} votes accepted")
        for reason, count in failures.items():
            inv.console.print(f"  {count} x {reason}")
    return EXIT_OK if not failed else EXIT_FAILED


def _votes(n: int) -> str:
    return f"{n} vote" if n == 1 else f"{n} votes"


def results_view(question: str, results: Any) -> Any:
    """The results as bars: one line per option, then the total (what `watch` redraws live)."""
    from rich.console import Group
    from rich.text import Text

    total = results.total_votes
    width = max((len(t.text) for t in results.tallies), default=0)
    lines = [Text(question, style="bold")]
    for tally in results.tallies:
        share = tally.votes / total if total else 0.0
        filled = round(share * 30)
        line = Text(f"{tally.text:<{width}}  ")
        line.append("█" * filled, style="green")
        line.append("░" * (30 - filled), style="dim")
        line.append(f"  {_votes(tally.votes)}  {share * 100:5.1f}%")
        lines.append(line)
    state = "final" if results.final else "live"
    lines.append(Text(f"total {_votes(total)} · {state} · sequence {results.sequence}", style="dim"))
    return Group(*lines)


def watch(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    question = inv.client.polls.GetPoll(pb.GetPollRequest(poll_id=ns.poll_id)).poll.question
    updates = inv.client.watch_results(ns.poll_id, on_retry=lambda e, n, d: inv.note(
        f"[yellow]connection lost ({e.code.name}); reconnecting[/yellow]"))
    seen = 0
    if inv.json or not inv.console.is_terminal:
        for update in updates:
            if inv.json:
                inv.emit_line(as_json(update))
            else:
                r = update.results
                print(f"{r.sequence}: " + ", ".join(f"{t.text}={t.votes}" for t in r.tallies)
                      + f" (total {r.total_votes}{', final' if update.final else ''})", flush=True)
            seen += 1
            if ns.limit and seen >= ns.limit:
                break
        return EXIT_OK
    from rich.live import Live

    with Live(console=inv.console, auto_refresh=False, transient=False) as live:
        for update in updates:
            live.update(results_view(question, update.results), refresh=True)
            seen += 1
            if ns.limit and seen >= ns.limit:
                break
    return EXIT_OK


def close(inv: Invocation) -> int:
    inv.require_token()
    reply = inv.client.polls.ClosePoll(_pb().ClosePollRequest(poll_id=inv.ns.poll_id))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.console.print(results_view(reply.poll.question, reply.results))
    return EXIT_OK
