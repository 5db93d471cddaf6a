"""The typed client's request batching (agora.client.batching) against a real polls server."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from agora.client.aio import Agora
from agora.client.errors import AgoraError
from agora.polls.v1 import polls_pb2 as pb
from google.rpc import error_details_pb2

from tests.services.polls.conftest import start_mesh


@pytest.fixture
async def polls(tmp_path):
    mesh, stop = await start_mesh("embedded", tmp_path, gateway=False)
    yield mesh
    await stop()


async def test_concurrent_votes_share_batches_and_each_caller_gets_its_own_answer(polls):
    request = pb.CreatePollRequest(question="Which?", options=["a", "b"])
    created = await polls.stub.CreatePoll(request, timeout=5)
    poll_id = created.poll.id
    async with Agora(targets={"polls": polls.grpc_target}) as agora:
        vote = agora.batched("polls", "CastVote")
        assert agora.batched("polls", "CastVote") is vote
        requests = [pb.CastVoteRequest(poll_id=poll_id, option=i % 2) for i in range(120)]
        requests += [pb.CastVoteRequest(poll_id=poll_id, option=5), pb.CastVoteRequest(poll_id="nope")]
        outcomes = await asyncio.gather(*(vote(r) for r in requests), return_exceptions=True)
        accepted = outcomes[:120]
        assert all(isinstance(a, pb.CastVoteResponse) and a.poll_id == poll_id for a in accepted)
        assert [a.option for a in accepted] == [i % 2 for i in range(120)]
        assert len({a.vote_id for a in accepted}) == 120
        out_of_range, missing = outcomes[120:]
        assert isinstance(out_of_range, AgoraError) and out_of_range.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "option" in out_of_range.field_violations
        assert out_of_range.detail(error_details_pb2.BadRequest) is not None
        assert isinstance(missing, AgoraError) and missing.code == grpc.StatusCode.NOT_FOUND
        assert vote.batches < len(requests) / 2  # batches held many calls
        # The same request id is the same vote, batched or not.
        keyed = pb.CastVoteRequest(poll_id=poll_id, option=1, request_id="once")
        first, again = await asyncio.gather(vote(keyed), vote(keyed))
        assert first == again == await agora.polls.CastVote(keyed)
        with pytest.raises(ValueError, match="batching"):
            agora.batched("polls", "GetPoll")


async def test_a_batch_that_fails_whole_fails_every_caller():
    async with Agora(targets={"polls": "127.0.0.1:1"}, timeout=2) as agora:
        vote = agora.batched("polls", "CastVote")
        outcomes = await asyncio.gather(*(vote(pb.CastVoteRequest(poll_id="p")) for _ in range(5)),
                                        return_exceptions=True)
    assert all(isinstance(o, AgoraError) and o.code in (grpc.StatusCode.UNAVAILABLE,
                                                        grpc.StatusCode.DEADLINE_EXCEEDED) for o in outcomes)
