"""Poll rules with no I/O: what a valid poll is, which votes count, how tallies move.

Times are integer microseconds since the epoch (`now_us()`), the same in every store.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from services.kit.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)

MAX_QUESTION = 500
MIN_OPTIONS, MAX_OPTIONS = 2, 100
MAX_OPTION_TEXT = 200
MAX_KEY = 128  # voter_key and request_id
MAX_BATCH = 500  # votes in one CastVotes call (the proto says so too)
DEFAULT_PAGE, MAX_PAGE = 50, 500


class Policy(enum.IntEnum):
    """Mirrors agora.polls.v1.VotePolicy (same numbers), so domain code needs no proto import."""

    UNSPECIFIED = 0
    ONE_PER_USER = 1
    ONE_PER_VOTER_KEY = 2
    UNRESTRICTED = 3


class CloseReason(enum.IntEnum):
    UNSPECIFIED = 0
    BY_CREATOR = 1
    DEADLINE = 2


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Poll:
    id: str
    question: str
    options: tuple[str, ...]
    policy: Policy
    allow_change: bool
    creator_id: str
    created_at: int
    closes_at: int | None = None
    closed_at: int | None = None
    vote_count: int = 0  # votes accepted so far (the last VoteCast.poll_vote_number)

    def is_open(self, now: int) -> bool:
        return self.closed_at is None and (self.closes_at is None or self.closes_at > now)


@dataclass(frozen=True)
class PollDraft:
    question: str
    options: tuple[str, ...]
    policy: Policy
    allow_change: bool
    closes_at: int | None


def validate_draft(question: str, options: Sequence[str], policy: int, allow_change: bool,
                   closes_at: int | None, now: int, signed_in: bool) -> PollDraft:
    """A CreatePoll request as a draft, or InvalidArgument naming every bad field at once."""
    problems: dict[str, str] = {}
    question = question.strip()
    if not question:
        problems["question"] = "must not be empty"
    elif len(question) > MAX_QUESTION:
        problems["question"] = f"must be at most {MAX_QUESTION} characters (got {len(question)})"
    texts = tuple(o.strip() for o in options)
    if not MIN_OPTIONS <= len(texts) <= MAX_OPTIONS:
        problems["options"] = f"a poll needs {MIN_OPTIONS} to {MAX_OPTIONS} options (got {len(texts)})"
    else:
        seen: set[str] = set()
        for i, text in enumerate(texts):
            if not text:
                problems[f"options[{i}]"] = "must not be empty"
            elif len(text) > MAX_OPTION_TEXT:
                problems[f"options[{i}]"] = f"must be at most {MAX_OPTION_TEXT} characters"
            elif text.casefold() in seen:
                problems[f"options[{i}]"] = f"duplicates an earlier option ({text!r})"
            seen.add(text.casefold())
    try:
        chosen = Policy(policy) if policy != Policy.UNSPECIFIED else Policy.UNRESTRICTED
    except ValueError:
        problems["vote_policy"] = f"unknown vote policy {policy}"
        chosen = Policy.UNRESTRICTED
    if allow_change and chosen == Policy.UNRESTRICTED:
        problems["allow_change"] = "needs a policy that identifies voters (ONE_PER_USER or ONE_PER_VOTER_KEY)"
    if closes_at is not None and closes_at <= now:
        problems["closes_at"] = "must be in the future"
    if problems:
        raise InvalidArgument.fields(problems)
    if chosen == Policy.ONE_PER_USER and not signed_in:
        raise Unauthenticated(
            "a ONE_PER_USER poll needs a signed-in creator: send `authorization: Bearer <token>`")
    return PollDraft(question, texts, chosen, allow_change, closes_at)


# -- votes


@dataclass(frozen=True)
class VoteRequest:
    """One CastVote, as it reaches the store (already checked for shape by `check_vote_shape`)."""

    poll_id: str
    option: int
    voter_key: str
    user_id: str  # the signed-in caller, '' when anonymous
    request_id: str = ""


@dataclass(frozen=True)
class Ballot:
    """An accepted vote: what CastVote answers and what `polls.vote.cast` carries."""

    vote_id: str
    poll_id: str
    option: int
    voter_key: str  # the key the policy deduplicates on (user id, voter key, or the vote id)
    user_id: str
    replaces_previous: bool
    previous_option: int
    previous_vote_id: str
    number: int  # poll_vote_number
    cast_at: int
    request_id: str = ""


@dataclass(frozen=True)
class Choice:
    """A voter's counted vote on one poll."""

    vote_id: str
    option: int


def check_vote_shape(poll_id: str, option: int, voter_key: str, request_id: str) -> None:
    problems: dict[str, str] = {}
    if not poll_id:
        problems["poll_id"] = "must not be empty"
    if option < 0:
        problems["option"] = f"must be a zero-based option index, not {option}"
    if len(voter_key) > MAX_KEY:
        problems["voter_key"] = f"must be at most {MAX_KEY} characters"
    if len(request_id) > MAX_KEY:
        problems["request_id"] = f"must be at most {MAX_KEY} characters"
    if problems:
        raise InvalidArgument.fields(problems)


@dataclass
class VoteDecisions:
    """What a batch of votes on one poll does: an outcome per request, the rows to write."""

    outcomes: list[Ballot | DomainError] = field(default_factory=list)
    new_ballots: list[Ballot] = field(default_factory=list)
    choices: dict[str, Choice] = field(default_factory=dict)  # voter_key -> counted vote, changed ones only
    vote_count: int = 0


def decide_votes(poll: Poll | None, poll_id: str, requests: Sequence[VoteRequest], new_ids: Iterable[str],
                 now: int, choices: Mapping[str, Choice], answered: Mapping[str, Ballot]) -> VoteDecisions:
    """Decide a batch of votes on one poll, in order, against the voters' current choices.

    `choices` holds the counted vote of the voters named in the batch, `answered` the ballots
    already accepted for the batch's request ids. Pure: the store locks the poll, reads those,
    calls this and writes what it returns."""
    out = VoteDecisions(vote_count=poll.vote_count if poll else 0)
    ids = iter(new_ids)
    current = dict(choices)
    replies = dict(answered)
    for req in requests:
        if req.request_id and req.request_id in replies:
            out.outcomes.append(replies[req.request_id])
            continue
        outcome = _decide_one(poll, poll_id, req, now, current)
        if isinstance(outcome, DomainError):
            out.outcomes.append(outcome)
            continue
        key, option, previous = outcome
        out.vote_count += 1
        vote_id = next(ids)
        ballot = Ballot(
            vote_id=vote_id, poll_id=poll_id, option=option,
            voter_key=key or vote_id, user_id=req.user_id,
            replaces_previous=previous is not None,
            previous_option=previous.option if previous else 0,
            previous_vote_id=previous.vote_id if previous else "",
            number=out.vote_count, cast_at=now, request_id=req.request_id,
        )
        if key:
            current[key] = out.choices[key] = Choice(vote_id, option)
        if req.request_id:
            replies[req.request_id] = ballot
        out.new_ballots.append(ballot)
        out.outcomes.append(ballot)
    return out


def _decide_one(poll: Poll | None, poll_id: str, req: VoteRequest, now: int,
                current: Mapping[str, Choice]) -> DomainError | tuple[str, int, Choice | None]:
    if poll is None:
        return NotFound.of("poll", poll_id)
    if not poll.is_open(now):
        return FailedPrecondition("the poll is closed: it takes no more votes", "POLL_CLOSED",
                                  f"polls/{poll.id}")
    if req.option >= len(poll.options):
        return InvalidArgument.field(
            "option", f"poll has options 0..{len(poll.options) - 1}; {req.option} is out of range")
    key = voter_key_for(poll, req)
    if isinstance(key, DomainError):
        return key
    previous = current.get(key) if key else None
    if previous is not None:
        if not poll.allow_change:
            return AlreadyExists("this voter has already voted in this poll")
        if previous.option == req.option:
            return AlreadyExists(f"this voter's vote already counts for option {req.option}")
    return key, req.option, previous


def voter_key_for(poll: Poll, req: VoteRequest) -> str | DomainError:
    """The key the poll deduplicates on; '' under UNRESTRICTED (the vote id is its own key)."""
    if poll.policy == Policy.ONE_PER_USER:
        if not req.user_id:
            return Unauthenticated(
                "this poll takes one vote per signed-in user: send `authorization: Bearer <token>`")
        return "user:" + req.user_id
    if poll.policy == Policy.ONE_PER_VOTER_KEY:
        if not req.voter_key:
            return InvalidArgument.field(
                "voter_key", "this poll takes one vote per voter_key: send one (1..128 characters)")
        return "key:" + req.voter_key
    return ""


def check_closer(poll: Poll | None, poll_id: str, user_id: str) -> Poll:
    """Who may close a poll early: its creator."""
    if poll is None:
        raise NotFound.of("poll", poll_id)
    if not poll.creator_id:
        raise PermissionDenied("this poll was created anonymously: it closes only at its closing time")
    if poll.creator_id != user_id:
        raise PermissionDenied("only the poll's creator can close it")
    return poll


def closed(poll: Poll, now: int) -> Poll:
    return poll if poll.closed_at is not None else replace(poll, closed_at=now)


# -- tallies


Ranges = tuple[tuple[int, int], ...]  # disjoint, sorted, inclusive [lo, hi] of applied vote numbers


def ranges_contain(ranges: Ranges, n: int) -> bool:
    for lo, hi in ranges:
        if lo <= n <= hi:
            return True
        if lo > n:
            return False
    return False


def ranges_add(ranges: Ranges, numbers: Iterable[int]) -> Ranges:
    """`ranges` with `numbers` added, merged back into as few ranges as possible."""
    spans = [list(r) for r in ranges] + [[n, n] for n in numbers]
    spans.sort()
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def ranges_count(ranges: Ranges) -> int:
    return sum(hi - lo + 1 for lo, hi in ranges)


@dataclass(frozen=True)
class CountedVote:
    """What the tally needs from a `polls.vote.cast` event."""

    poll_id: str
    number: int
    option: int
    replaces_previous: bool = False
    previous_option: int = 0


@dataclass(frozen=True)
class Tally:
    """Live counts of one poll. `applied` says exactly which vote numbers are in `counts`, so a
    redelivered vote is recognised and never counted twice."""

    poll_id: str
    counts: Mapping[int, int] = field(default_factory=dict)
    applied: Ranges = ()
    version: int = 0  # bumped by every change: the results' sequence
    closed_total: int | None = None  # accepted votes at close, once the poll closed
    final: bool = False  # consolidated into the poll store

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        """Closed, and every vote accepted before the close is counted."""
        if self.closed_total is None:
            return False
        return self.applied == (((1, self.closed_total),) if self.closed_total else ())


@dataclass(frozen=True)
class TallyChange:
    """One conditional update of a tally: applies only if the stored version is still `base`."""

    poll_id: str
    base: int  # the version this change was computed from (0: no tally yet)
    deltas: Mapping[int, int]
    applied: Ranges
    closed_total: int | None
    final: bool
    votes: int  # how many votes this change counts (for metrics)

    def result(self, before: Tally) -> Tally:
        counts = dict(before.counts)
        for option, d in self.deltas.items():
            counts[option] = counts.get(option, 0) + d
        return Tally(self.poll_id, counts, self.applied, before.version + 1, self.closed_total, self.final)


def tally_change(tally: Tally, votes: Iterable[CountedVote], closed_total: int | None = None,
                 final: bool = False) -> TallyChange | None:
    """The change that counts `votes` (skipping numbers already applied) and records a close;
    None when there is nothing to change."""
    deltas: dict[int, int] = {}
    fresh: list[int] = []
    seen: set[int] = set()
    for v in votes:
        if v.number in seen or ranges_contain(tally.applied, v.number):
            continue
        seen.add(v.number)
        fresh.append(v.number)
        deltas[v.option] = deltas.get(v.option, 0) + 1
        if v.replaces_previous:
            deltas[v.previous_option] = deltas.get(v.previous_option, 0) - 1
    closing = tally.closed_total if closed_total is None else closed_total
    if not fresh and closing == tally.closed_total and final == tally.final:
        return None
    return TallyChange(
        tally.poll_id, tally.version, {k: d for k, d in deltas.items() if d},
        ranges_add(tally.applied, fresh), closing, final or tally.final, len(fresh),
    )


def by_poll(requests: Sequence[VoteRequest]) -> dict[str, list[int]]:
    """Request positions grouped by poll, polls in id order (the order stores lock them in)."""
    groups: dict[str, list[int]] = {}
    for i, req in enumerate(requests):
        groups.setdefault(req.poll_id, []).append(i)
    return dict(sorted(groups.items()))
