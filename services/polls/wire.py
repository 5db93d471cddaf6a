"""Polls ⇄ protos: polls, results and votes on the wire, page tokens, and the voting seed's models.

Polls keep times as integer microseconds (domain.now_us, the same in every store), where
services/kit/wire.py converts datetimes: `timestamp_us` is the one converter polls adds for that
(a datetime per vote would be work the vote path does not need), built on the same Timestamp.
"""

from __future__ import annotations

from agora.polls.v1 import polls_pb2 as pb
from google.protobuf.struct_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc.status_pb2 import Status

from services.kit import paging
from services.kit.errors import DomainError, InvalidArgument
from services.polls.domain import Ballot, Poll, Tally, now_us

# Go's zero time.Time, which the seed's EndDate shows for a poll without an end.
GO_ZERO_TIME = Timestamp(seconds=-62135596800)


def timestamp_us(us: int) -> Timestamp:
    """A Timestamp for integer microseconds since the epoch."""
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def optional_timestamp_us(us: int | None) -> Timestamp | None:
    """A Timestamp for microseconds, None for None: the field stays unset (and absent from JSON)."""
    return None if us is None else timestamp_us(us)


def micros(ts: Timestamp) -> int:
    return ts.ToMicroseconds()


def poll_message(poll: Poll, now: int) -> pb.Poll:
    return pb.Poll(
        id=poll.id, question=poll.question, vote_policy=int(poll.policy), allow_change=poll.allow_change,
        creator_id=poll.creator_id, created_at=optional_timestamp_us(poll.created_at),
        closes_at=optional_timestamp_us(poll.closes_at), closed_at=optional_timestamp_us(poll.closed_at),
        status=pb.POLL_STATUS_OPEN if poll.is_open(now) else pb.POLL_STATUS_CLOSED,
        options=[pb.PollOption(index=i, text=t) for i, t in enumerate(poll.options)],
    )


def results_message(poll: Poll, counts: dict[int, int], sequence: int, final: bool) -> pb.PollResults:
    tallies = [pb.OptionTally(index=i, text=t, votes=counts.get(i, 0)) for i, t in enumerate(poll.options)]
    return pb.PollResults(poll_id=poll.id, tallies=tallies, total_votes=sum(t.votes for t in tallies),
                          sequence=sequence, final=final, as_of=timestamp_us(now_us()))


def watch_message(results: pb.PollResults) -> pb.WatchResultsResponse:
    return pb.WatchResultsResponse(sequence=results.sequence, results=results, final=results.final)


def tally_watch_message(poll: Poll, tally: Tally) -> pb.WatchResultsResponse:
    """One WatchResults snapshot of a live tally (the results board's, shared by every watcher)."""
    results = results_message(poll, dict(tally.counts), tally.version, tally.final)
    return pb.WatchResultsResponse(sequence=tally.version, results=results, final=tally.final)


def cast_vote_response(ballot: Ballot) -> pb.CastVoteResponse:
    return pb.CastVoteResponse(
        vote_id=ballot.vote_id, poll_id=ballot.poll_id, option=ballot.option,
        replaced_previous=ballot.replaces_previous, previous_option=ballot.previous_option,
        accepted_at=optional_timestamp_us(ballot.cast_at))


def cast_vote_result(outcome: Ballot | DomainError) -> pb.CastVoteResult:
    """One vote's answer in a CastVotes batch: its response, or its refusal as a google.rpc.Status."""
    if isinstance(outcome, DomainError):
        return pb.CastVoteResult(status=outcome.to_status())
    return pb.CastVoteResult(status=Status(code=0), response=cast_vote_response(outcome))


# -- page tokens (kit/paging.py). The cursor is a position in the one order every listing shares
# (newest first: created_at, id), right under any filter, so a token names no filter.


def page_token(cursor: tuple[int, str] | None) -> str:
    return "" if cursor is None else paging.encode_token([cursor[0], cursor[1]])


def _cursor(position: object) -> tuple[int, str]:
    if not isinstance(position, list) or len(position) != 2 or not isinstance(position[1], str) \
            or not position[1]:
        raise ValueError("not a (created_at, id) cursor")
    return int(position[0]), position[1]


def page_cursor(token: str) -> tuple[int, str] | None:
    """The cursor a ListPolls token continues from (None: the first page). Polls' own message for a
    token it did not issue, as before the kit's tokens (the kit's check, the same status)."""
    try:
        return paging.decode_token(token, kind=_cursor)
    except InvalidArgument:
        raise InvalidArgument.field(
            "page_token", "not a token this server issued; start again without one") from None


# -- the voting seed's wire: its models (Poll, Option, Go field names) to and from our protos


def seed_option_texts(values: list[Value]) -> list[str]:
    """The seed's options: each a string, or an object {"Description": ...} with the key in any case."""
    texts: list[str] = []
    for i, value in enumerate(values):
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            texts.append(value.string_value)
            continue
        if kind == "struct_value":
            found = [v for k, v in value.struct_value.fields.items() if k.casefold() == "description"]
            if len(found) == 1 and found[0].WhichOneof("kind") == "string_value":
                texts.append(found[0].string_value)
                continue
        raise InvalidArgument.field(
            f"Options[{i}]",
            'expected a string or an object with a "Description" string, e.g. {"Description": "Pizza"}')
    return texts


def seed_poll(poll: pb.Poll, results: pb.PollResults | None) -> pb.SeedPoll:
    """The seed's model.Poll: Votes is the live count; Active is false once the poll is closed."""
    votes = {t.index: t.votes for t in results.tallies} if results is not None else {}
    return pb.SeedPoll(
        id=poll.id, question=poll.question, active=poll.status == pb.POLL_STATUS_OPEN,
        end_date=poll.closes_at if poll.HasField("closes_at") else GO_ZERO_TIME,
        options=[pb.SeedOption(id=o.index, poll_id=poll.id, description=o.text, votes=votes.get(o.index, 0))
                 for o in poll.options],
    )
