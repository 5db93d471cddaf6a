"""The pure rules: poll validation, vote decisions, tally math (no servers)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unauthenticated
from services.polls.domain import (
    Choice,
    CountedVote,
    Policy,
    Poll,
    Tally,
    VoteRequest,
    decide_votes,
    ranges_add,
    ranges_contain,
    ranges_count,
    tally_change,
    validate_draft,
)


def poll(**kw) -> Poll:
    base = dict(id="p", question="q", options=("a", "b", "c"), policy=Policy.ONE_PER_VOTER_KEY,
                allow_change=False, creator_id="ann", created_at=0, closes_at=None, closed_at=None,
                vote_count=0)
    return Poll(**{**base, **kw})


def test_draft_validation_names_every_bad_field():
    with pytest.raises(InvalidArgument) as info:
        validate_draft("", ["a", "A", ""], Policy.UNRESTRICTED, True, 5, now=10, signed_in=False)
    assert set(info.value.violations) == {"question", "options[1]", "options[2]", "allow_change", "closes_at"}
    for count in (1, 101):
        with pytest.raises(InvalidArgument) as info:
            validate_draft("q", [f"o{i}" for i in range(count)], 0, False, None, now=0, signed_in=False)
        assert "options" in info.value.violations
    with pytest.raises(Unauthenticated):
        validate_draft("q", ["a", "b"], Policy.ONE_PER_USER, False, None, now=0, signed_in=False)
    unrestricted = validate_draft(" q ", ["a", "b"], 0, False, None, now=0, signed_in=False)
    assert unrestricted.policy == Policy.UNRESTRICTED


def test_vote_decisions_in_order():
    ids = (f"id{i}" for i in range(100))
    reqs = [VoteRequest("p", 0, "k1", ""), VoteRequest("p", 1, "k1", ""), VoteRequest("p", 3, "k2", ""),
            VoteRequest("p", 1, "", "")]
    out = decide_votes(poll(vote_count=4), "p", reqs, ids, 1, {}, {}).outcomes
    assert out[0].number == 5 and out[0].voter_key == "key:k1"
    assert isinstance(out[1], AlreadyExists)
    assert isinstance(out[2], InvalidArgument) and "option" in out[2].violations
    assert isinstance(out[3], InvalidArgument) and "voter_key" in out[3].violations
    assert isinstance(decide_votes(None, "x", reqs[:1], ids, 1, {}, {}).outcomes[0], NotFound)
    assert isinstance(decide_votes(poll(closes_at=1), "p", reqs[:1], ids, 1, {}, {}).outcomes[0],
                      FailedPrecondition)
    moved = decide_votes(poll(allow_change=True), "p", [VoteRequest("p", 2, "k1", "")], ids, 1,
                         {"key:k1": Choice("old", 0)}, {})
    assert moved.outcomes[0].replaces_previous and moved.outcomes[0].previous_vote_id == "old"
    assert moved.choices == {"key:k1": Choice(moved.outcomes[0].vote_id, 2)}
    free = decide_votes(poll(policy=Policy.UNRESTRICTED), "p", [VoteRequest("p", 0, "", "")] * 2, ids, 1,
                        {}, {})
    assert [b.voter_key == b.vote_id for b in free.outcomes] == [True, True]


@given(st.lists(st.integers(1, 200), max_size=300), st.lists(st.integers(1, 200), max_size=100))
def test_ranges_hold_exactly_the_numbers_added(first, second):
    ranges = ranges_add(ranges_add((), first), second)
    assert ranges_count(ranges) == len(set(first) | set(second))
    assert all(ranges_contain(ranges, n) for n in first + second)
    assert all(a[1] + 1 < b[0] for a, b in zip(ranges, ranges[1:]))


@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 3)), max_size=200), st.integers(1, 5))
def test_tally_counts_each_vote_number_once_whatever_the_redelivery(deliveries, batch):
    tally = Tally("p")
    for i in range(0, len(deliveries), batch):
        votes = [CountedVote("p", n, o) for n, o in deliveries[i:i + batch]]
        change = tally_change(tally, votes)
        if change is not None:
            tally = change.result(tally)
    first = {}
    for n, o in deliveries:
        first.setdefault(n, o)
    assert tally.total == len(first)
    assert ranges_count(tally.applied) == len(first)


def test_complete_only_when_every_accepted_vote_is_counted():
    assert Tally("p", closed_total=0).complete
    assert not Tally("p", applied=((1, 2),), closed_total=3).complete
    assert Tally("p", applied=((1, 3),), closed_total=3).complete
