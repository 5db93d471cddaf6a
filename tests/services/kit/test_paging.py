"""kit/paging.py: one rule for page sizes, one token format bound to the filter it was issued for."""

from __future__ import annotations

import pytest

from services.kit import paging
from services.kit.errors import InvalidArgument


def test_page_size_defaults_caps_and_refuses_negative():
    assert paging.page_size(0) == paging.DEFAULT_PAGE_SIZE
    assert paging.page_size(7) == 7
    assert paging.page_size(10_000) == paging.MAX_PAGE_SIZE
    assert paging.page_size(0, default=20, maximum=100) == 20
    assert paging.page_size(101, default=20, maximum=100) == 100
    with pytest.raises(InvalidArgument) as refused:
        paging.page_size(-1, field="limit")
    assert refused.value.violations == {"limit": "must not be negative"}


@pytest.mark.parametrize("position", [0, 41, "orders/2026-12-07/abc", [3, "x"]])
def test_a_token_round_trips_under_its_filter(position):
    token = paging.encode_token(position, "status=OPEN", "seller=s1")
    assert "=" not in token  # URL-safe, unpadded: it goes in a query string as it is
    kind = list if isinstance(position, list) else type(position)
    assert paging.decode_token(token, "status=OPEN", "seller=s1", kind=kind) == position


def test_no_token_is_the_first_page():
    assert paging.decode_token("", "anything", kind=int) is None


def test_a_token_for_another_filter_is_refused():
    token = paging.encode_token(50, "status=OPEN")
    with pytest.raises(InvalidArgument) as refused:
        paging.decode_token(token, "status=CLOSED", kind=int)
    assert "different filter" in refused.value.violations["page_token"]


@pytest.mark.parametrize("token", ["garbage", "e30", paging.encode_token("x")[:-3] + "!!!"])
def test_a_token_this_rpc_did_not_issue_is_refused(token):
    with pytest.raises(InvalidArgument) as refused:
        paging.decode_token(token, kind=paging.offset)
    assert refused.value.violations == {"page_token": "not a token this RPC issued"}


def test_offset_positions_are_non_negative_integers():
    assert paging.offset("12") == 12
    with pytest.raises(InvalidArgument):
        paging.decode_token(paging.encode_token(-5), kind=paging.offset)
