"""Chat's pure rules: limits, names, page tokens."""

from __future__ import annotations

import pytest

from services.chat import domain
from services.chat.domain import Author, Upload
from services.kit import paging
from services.kit.errors import InvalidArgument

ALICE = Author("", "alice")


def violation(exc: InvalidArgument) -> str:
    return next(iter(exc.violations))


def test_text_limits_name_the_field():
    domain.check_draft("general", ALICE, "x" * domain.TEXT_MAX_CHARS, None, "")
    with pytest.raises(InvalidArgument) as too_long:
        domain.check_draft("general", ALICE, "x" * (domain.TEXT_MAX_CHARS + 1), None, "")
    assert violation(too_long.value) == "text" and "4096" in too_long.value.message
    # 4,096 characters of at most 4 bytes each always fit the 16 KiB byte limit.
    domain.check_draft("general", ALICE, "\U0001f600" * domain.TEXT_MAX_CHARS, None, "")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message_is_refused(text):
    with pytest.raises(InvalidArgument) as exc:
        domain.check_draft("general", ALICE, text, None, "")
    assert violation(exc.value) == "text"


def test_attachment_rules():
    ok = Upload("a.png", "image/png", b"\x89PNG")
    assert domain.check_draft("general", ALICE, "", ok, "").upload == ok
    cases = {
        "attachment.content_type": Upload("a.html", "text/html", b"<p>"),
        "attachment.data": Upload("big.pdf", "application/pdf", b"x" * (domain.ATTACHMENT_MAX_BYTES + 1)),
        "attachment.filename": Upload("", "image/png", b"x"),
    }
    for field, upload in cases.items():
        with pytest.raises(InvalidArgument) as exc:
            domain.check_draft("general", ALICE, "", upload, "")
        assert violation(exc.value) == field


def test_author_signed_in_wins_over_username():
    assert domain.author_for(("u1", "alice"), "mallory") == Author("u1", "alice")
    assert domain.author_for(None, " bob ") == Author("", "bob")
    for bad in ("", "x" * 33, "a\x00b"):
        with pytest.raises(InvalidArgument):
            domain.author_for(None, bad)
    assert Author("u1", "alice").key != Author("", "alice").key


def test_rooms_and_tokens():
    assert domain.check_new_room("", "Café Talk!", "") == ("cafe-talk", "Café Talk!", "")
    with pytest.raises(InvalidArgument) as exc:
        domain.check_new_room("Bad Id", "", "d" * 1001)
    assert set(exc.value.violations) == {"room_id", "title", "description"}
    token = paging.encode_token(42, "history", "general")
    assert paging.decode_token(token, "history", "general", kind=paging.offset) == 42
    assert paging.decode_token("", "history", "general", kind=paging.offset) is None
    for forged in ("nonsense!", paging.encode_token(3, "rooms")):
        with pytest.raises(InvalidArgument):
            paging.decode_token(forged, "history", "general", kind=paging.offset)
    assert domain.page_size(0, "limit") == 50 and domain.page_size(10_000, "limit") == 500
    with pytest.raises(InvalidArgument):
        domain.page_size(-1, "limit")
