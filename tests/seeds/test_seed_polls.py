"""Seed 000 (br4tech/goi-process-enquete): a Go client of the voting API.

The seed's models are `Poll{Id, Question, Options, Active, EndDate}` and
`Option{Id, PollId, Description, Votes}` without JSON tags, so the keys are the Go field names; a Go
client decodes them case-insensitively and sends whatever case it likes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

POLL_KEYS = {"Id", "Question", "Options", "Active", "EndDate"}
OPTION_KEYS = {"Id", "PollId", "Description", "Votes"}


@pytest.fixture
async def http(mesh):
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as client:
        yield client


def assert_poll_shape(poll: dict) -> None:
    assert set(poll) == POLL_KEYS, poll
    assert isinstance(poll["Id"], str) and isinstance(poll["Question"], str)
    assert isinstance(poll["Active"], bool) and isinstance(poll["EndDate"], str)
    for option in poll["Options"]:
        assert set(option) == OPTION_KEYS, option
        assert isinstance(option["Id"], int) and isinstance(option["Votes"], int)
        assert option["PollId"] == poll["Id"] and isinstance(option["Description"], str)


async def votes_reach(http, poll_id: str, want: list[int], timeout: float = 20.0) -> dict:
    """The tally follows an accepted vote by milliseconds: read GET /poll/{id} until it shows `want`."""
    deadline = time.monotonic() + timeout
    while True:
        poll = (await http.get(f"/poll/{poll_id}")).json()
        if [o["Votes"] for o in poll["Options"]] == want:
            return poll
        assert time.monotonic() < deadline, f"votes never reached {want}: {poll}"
        await asyncio.sleep(0.05)


async def test_create_in_the_go_model_with_keys_in_any_case(http):
    end = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
    reply = await http.post("/poll", json={
        "Question": "Lunch?", "options": [{"Description": "Pizza"}, {"description": "Sushi"}],
        "ENDDATE": end.isoformat(), "Active": True,  # a field the server sets: ignored, as Go's decoder does
    })
    assert reply.status_code == 201, reply.text
    poll = reply.json()
    assert_poll_shape(poll)
    assert poll["Question"] == "Lunch?" and poll["Active"] is True
    assert [o["Description"] for o in poll["Options"]] == ["Pizza", "Sushi"]
    assert [o["Votes"] for o in poll["Options"]] == [0, 0]
    assert datetime.fromisoformat(poll["EndDate"].replace("Z", "+00:00")) == end


async def test_create_with_plain_option_strings_still_works(http):
    reply = await http.post("/poll", json={"question": "Tabs or spaces?", "options": ["tabs", "spaces"]})
    assert reply.status_code == 201, reply.text
    poll = reply.json()
    assert_poll_shape(poll)
    assert poll["EndDate"] == "0001-01-01T00:00:00Z"  # Go's zero time: the poll has no end


async def test_vote_by_option_id_counts_live(http):
    poll = (await http.post("/poll", json={"Question": "Best seed?", "Options": [
        {"Description": "polls"}, {"Description": "auctions"}, {"Description": "chat"}]})).json()
    ids = [o["Id"] for o in poll["Options"]]
    replies = await asyncio.gather(*(http.post(f"/vote/{poll['Id']}/{ids[i % 3]}") for i in range(9)),
                                   http.post(f"/vote/{poll['Id']}/{ids[2]}"))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies if r.status_code != 200][:1]
    counted = await votes_reach(http, poll["Id"], [3, 3, 4])
    assert_poll_shape(counted)
    assert counted["Active"] is True
    # The same votes, through Agora's own route: one domain, two shapes.
    v1 = (await http.get(f"/v1/polls/{poll['Id']}")).json()
    assert [int(t.get("votes", 0)) for t in v1["results"]["tallies"]] == [3, 3, 4]


async def test_a_closed_poll_shows_active_false(http):
    end = datetime.now(timezone.utc) + timedelta(seconds=2)
    poll = (await http.post("/poll", json={"Question": "Quick?", "Options": [{"Description": "y"},
                                                                            {"Description": "n"}],
                                           "EndDate": end.isoformat()})).json()
    assert poll["Active"] is True
    deadline = time.monotonic() + 20
    while (await http.get(f"/poll/{poll['Id']}")).json()["Active"]:
        assert time.monotonic() < deadline, "the poll never closed at its EndDate"
        await asyncio.sleep(0.2)
    late = await http.post(f"/vote/{poll['Id']}/0")
    assert late.status_code == 400 and "closed" in late.json()["message"]


async def test_bad_input_gets_a_clear_answer(http):
    missing = await http.get("/poll/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    odd = await http.post("/poll", json={"question": "x?", "options": [1, 2]})
    assert odd.status_code == 400
    assert "Options[0]" in odd.json()["message"] and "Description" in odd.json()["message"]
    poll = (await http.post("/poll", json={"question": "Range?", "options": ["a", "b"]})).json()
    beyond = await http.post(f"/vote/{poll['Id']}/7")
    assert beyond.status_code == 400 and "option" in beyond.json()["message"]
