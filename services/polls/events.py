"""The polls domain's event envelopes, written to the outbox in the same transaction as the change
they report (the store calls these builders inside it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agora.events.v1 import polls_pb2 as events
from agora.events.v1.envelope_pb2 import Envelope
from agora.polls.v1.polls_pb2 import VotesCast

from services.kit.bus.envelopes import new_envelope
from services.polls.domain import Ballot, CloseReason, Poll
from services.polls.wire import optional_timestamp_us, timestamp_us

SOURCE = "polls"
POLL_CREATED, VOTE_CAST, POLL_CLOSED = "polls.poll.created", "polls.vote.cast", "polls.poll.closed"
VOTES_CAST = "polls.votes.cast"  # one CastVotes batch: agora.polls.v1.VotesCast


def created_events(poll: Poll) -> list[Envelope]:
    created_at = timestamp_us(poll.created_at)
    payload = events.PollCreated(
        poll_id=poll.id, question=poll.question, options=list(poll.options), vote_policy=int(poll.policy),
        allow_change=poll.allow_change, creator_id=poll.creator_id,
        closes_at=optional_timestamp_us(poll.closes_at), created_at=created_at)
    return [new_envelope(POLL_CREATED, SOURCE, poll.id, payload, occurred_at=created_at)]


def _vote_cast(ballot: Ballot) -> events.VoteCast:
    return events.VoteCast(
        vote_id=ballot.vote_id, poll_id=ballot.poll_id, option=ballot.option, voter_key=ballot.voter_key,
        user_id=ballot.user_id, replaces_previous=ballot.replaces_previous,
        previous_option=ballot.previous_option, previous_vote_id=ballot.previous_vote_id,
        poll_vote_number=ballot.number, cast_at=timestamp_us(ballot.cast_at))


def vote_event(ballot: Ballot) -> Envelope:
    payload = _vote_cast(ballot)
    # Keyed by poll and voter: one voter's votes stay in order (a change follows the vote it
    # replaces), while different voters' votes are counted in parallel, in batches.
    return new_envelope(VOTE_CAST, SOURCE, f"{ballot.poll_id}/{ballot.voter_key}", payload,
                        id=ballot.vote_id, occurred_at=timestamp_us(ballot.cast_at))


def votes_event(ballots: Sequence[Ballot]) -> Envelope:
    """One `polls.votes.cast` for the votes a CastVotes call accepted (one outbox row, one message).
    Keyed by the first vote's poll: the tally counts by vote number, so order across keys does not
    change a count; a bridge's batch is usually one hot poll's votes anyway."""
    first = ballots[0]
    return new_envelope(VOTES_CAST, SOURCE, first.poll_id, VotesCast(votes=[_vote_cast(b) for b in ballots]),
                        occurred_at=timestamp_us(first.cast_at))


def closed_events(reason: CloseReason, closed_by: str) -> Callable[[Poll, int], list[Envelope]]:
    def build(poll: Poll, now: int) -> list[Envelope]:
        payload = events.PollClosed(poll_id=poll.id, reason=int(reason), closed_by=closed_by,
                                    accepted_votes=poll.vote_count, closed_at=timestamp_us(now))
        return [new_envelope(POLL_CLOSED, SOURCE, poll.id, payload, occurred_at=timestamp_us(now))]

    return build
