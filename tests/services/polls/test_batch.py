"""CastVotes and the batching of CastVote: per-vote answers, one event per batch, exact counts after
redelivery, and the bridge coalescing concurrent seed-route votes into batches (embedded and real)."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import httpx
import pytest
from agora.polls.v1 import polls_pb2 as pb
from google.rpc import code_pb2
from prometheus_client import REGISTRY

from gateway.errors import BridgeError, from_rpc_error
from services.kit.bus.envelopes import unpack
from tests.services.polls.conftest import bearer, unique

BATCH = "agora.polls.v1.PollService.CastVotes"


async def until(predicate, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def counted(mesh, poll_id: str, expected: list[int]) -> None:
    async def reached():
        reply = await mesh.stub.GetPoll(pb.GetPollRequest(poll_id=poll_id), timeout=5)
        return [t.votes for t in reply.results.tallies] == expected

    await until(reached, f"counts {expected} on {poll_id}")


async def new_poll(mesh, policy=pb.VOTE_POLICY_UNRESTRICTED, options=("a", "b", "c"), metadata=()):
    request = pb.CreatePollRequest(question="Which?", options=list(options), vote_policy=policy)
    created = await mesh.stub.CreatePoll(request, metadata=metadata, timeout=5)
    return created.poll.id


@pytest.fixture
async def vote_events(mesh):
    """Every vote event the mesh's bus carries, as it arrives (a group of its own)."""
    seen: list = []
    group = unique("votes-seen").replace("_", "-")

    async def record(envelope):
        seen.append(envelope)

    subscription = await mesh.spec.bus.subscribe(group, ["polls.vote.cast", "polls.votes.cast"], record)
    yield seen
    await subscription.cancel()
    if mesh.backend == "real":
        await mesh.spec.bus.delete_group(group)


def of_poll(seen: list, poll_id: str) -> list:
    return [e for e in seen if e.key.split("/")[0] == poll_id]


async def test_each_vote_of_a_batch_gets_its_own_answer_and_the_batch_is_one_event(mesh, vote_events):
    open_id = await new_poll(mesh, pb.VOTE_POLICY_ONE_PER_VOTER_KEY)
    closed_id = await new_poll(mesh, metadata=bearer("ann"))
    await mesh.stub.ClosePoll(pb.ClosePollRequest(poll_id=closed_id), metadata=bearer("ann"), timeout=5)
    votes = [
        pb.CastVoteRequest(poll_id=open_id, option=0, voter_key="v0", request_id="r0"),
        pb.CastVoteRequest(poll_id=open_id, option=7, voter_key="v1"),  # out of range
        pb.CastVoteRequest(poll_id=open_id, option=-1, voter_key="v2"),  # breaks the field's bound
        pb.CastVoteRequest(poll_id=open_id, option=1, voter_key="v0"),  # voted already
        pb.CastVoteRequest(poll_id="00000000-0000-0000-0000-000000000000", option=0, voter_key="v"),
        pb.CastVoteRequest(poll_id=closed_id, option=0),
        pb.CastVoteRequest(poll_id=open_id, option=1, voter_key="x" * 129),  # voter_key too long
        pb.CastVoteRequest(poll_id=open_id, option=2, voter_key="v3"),
        pb.CastVoteRequest(poll_id=open_id, option=0, voter_key="v0", request_id="r0"),  # retry in the batch
    ]
    reply = await mesh.stub.CastVotes(pb.CastVotesRequest(votes=votes), timeout=10)
    codes = [r.status.code for r in reply.results]
    assert codes == [code_pb2.OK, code_pb2.INVALID_ARGUMENT, code_pb2.INVALID_ARGUMENT,
                     code_pb2.ALREADY_EXISTS, code_pb2.NOT_FOUND, code_pb2.FAILED_PRECONDITION,
                     code_pb2.INVALID_ARGUMENT, code_pb2.OK, code_pb2.OK]
    assert reply.results[8].response == reply.results[0].response
    assert not reply.results[1].HasField("response") and reply.results[0].response.vote_id
    # Each refusal is exactly what CastVote alone answers for the same vote.
    for i in (1, 2, 3, 4, 5, 6):
        with pytest.raises(grpc.aio.AioRpcError) as alone:
            await mesh.stub.CastVote(votes[i], timeout=5)
        assert alone.value.code().value[0] == reply.results[i].status.code
        assert alone.value.details() == reply.results[i].status.message
    await counted(mesh, open_id, [1, 0, 1])
    await until(lambda: asyncio.sleep(0, of_poll(vote_events, open_id)), "the batch's event")
    batches = of_poll(vote_events, open_id)
    assert [e.type for e in batches] == ["polls.votes.cast"]
    carried = unpack(batches[0], pb.VotesCast).votes
    assert sorted(v.vote_id for v in carried) == sorted(reply.results[i].response.vote_id for i in (0, 7))


async def test_retries_across_batches_are_exact_and_a_redelivered_batch_counts_once(mesh, vote_events):
    poll_id = await new_poll(mesh)
    votes = [pb.CastVoteRequest(poll_id=poll_id, option=i % 3, request_id=f"r{i}") for i in range(30)]
    first = await mesh.stub.CastVotes(pb.CastVotesRequest(votes=votes[:20]), timeout=10)
    second = await mesh.stub.CastVotes(pb.CastVotesRequest(votes=votes[10:]), timeout=10)  # 10 are retries
    assert [r.response for r in second.results[:10]] == [r.response for r in first.results[10:]]
    assert len({r.response.vote_id for r in (*first.results, *second.results)}) == 30
    await counted(mesh, poll_id, [10, 10, 10])
    await until(lambda: asyncio.sleep(0, len(of_poll(vote_events, poll_id)) == 2), "both batches' events")
    consumer = mesh.spec.consumer
    for envelope in of_poll(vote_events, poll_id):  # redelivered, as after a broker restart
        await consumer.handle(envelope)
    await counted(mesh, poll_id, [10, 10, 10])
    # A single CastVote still publishes `polls.vote.cast`, and the tally still counts it.
    single = await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll_id, option=2), timeout=5)
    await counted(mesh, poll_id, [10, 10, 11])
    await until(lambda: asyncio.sleep(0, len(of_poll(vote_events, poll_id)) == 3), "the single vote's event")
    old = [e for e in of_poll(vote_events, poll_id) if e.type == "polls.vote.cast"]
    assert [e.id for e in old] == [single.vote_id]
    await consumer.handle(old[0])
    await counted(mesh, poll_id, [10, 10, 11])


async def test_every_vote_of_a_batch_is_the_callers(mesh):
    poll_id = await new_poll(mesh, pb.VOTE_POLICY_ONE_PER_USER, metadata=bearer("ann"))
    vote = pb.CastVoteRequest(poll_id=poll_id, option=1)
    anonymous = await mesh.stub.CastVotes(pb.CastVotesRequest(votes=[vote]), timeout=5)
    assert anonymous.results[0].status.code == code_pb2.UNAUTHENTICATED
    bob = await mesh.stub.CastVotes(pb.CastVotesRequest(votes=[vote, vote]), metadata=bearer("bob"),
                                    timeout=5)
    assert [r.status.code for r in bob.results] == [code_pb2.OK, code_pb2.ALREADY_EXISTS]
    await counted(mesh, poll_id, [0, 1, 0])


async def test_a_batch_out_of_bounds_is_refused_whole(mesh):
    for votes in ([], [pb.CastVoteRequest(poll_id="p")] * 501):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await mesh.stub.CastVotes(pb.CastVotesRequest(votes=votes), timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "votes" in refused.value.details()


def batch_metric(name: str) -> float:
    return REGISTRY.get_sample_value(f"agora_bridge_batch_size_{name}", {"method": BATCH}) or 0.0


async def expected_http(mesh, poll_id: str, option: int) -> tuple[int, dict]:
    """What the bridge answered for a refused vote before batching: the unary error, rendered."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await mesh.stub.CastVote(pb.CastVoteRequest(poll_id=poll_id, option=option), timeout=5)
    return from_rpc_error(refused.value)


async def test_concurrent_seed_votes_through_the_bridge_become_few_batches_with_their_own_answers(mesh):
    poll_id = await new_poll(mesh)
    closed_id = await new_poll(mesh, metadata=bearer("ann"))
    await mesh.stub.ClosePoll(pb.ClosePollRequest(poll_id=closed_id), metadata=bearer("ann"), timeout=5)
    missing = str(uuid.uuid4())
    routes = [(poll_id, i % 3) for i in range(170)]
    routes += [(poll_id, 7)] * 10 + [(poll_id, -1)] * 5 + [(closed_id, 0)] * 10 + [(missing, 0)] * 5
    calls, sent = batch_metric("count"), batch_metric("sum")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=30.0,
                                 limits=httpx.Limits(max_connections=300)) as http:
        replies = await asyncio.gather(*(http.post(f"/vote/{p}/{o}") for p, o in routes))
    assert batch_metric("sum") - sent == len(routes)  # every vote went through a batch
    assert batch_metric("count") - calls < len(routes) / 2  # ... and batches held many votes
    refused = {(p, o) for p, o in routes if p != poll_id or o not in (0, 1, 2)}
    expected = {(p, o): await expected_http(mesh, p, o) for p, o in refused}
    ids = set()
    for (p, o), reply in zip(routes, replies):
        if (p, o) in expected:
            status, body = expected[(p, o)]
            assert (reply.status_code, reply.json()) == (status, body), (p, o)
        else:
            assert reply.status_code == 200, reply.text
            answer = reply.json()
            assert answer["pollId"] == p and answer.get("option", 0) == o
            ids.add(answer["voteId"])
    assert len(ids) == 170
    await counted(mesh, poll_id, [57, 57, 56])


async def test_votes_batched_at_the_bridge_render_each_refusal_with_its_details(mesh):
    poll_id = await new_poll(mesh)
    calls = batch_metric("count")
    async with httpx.AsyncClient(base_url=mesh.base_url, timeout=10.0) as http:
        # No REST route for the batch itself: the per-address write limit counts requests.
        assert (await http.post("/v1/polls:castVotes", json={"votes": []})).status_code == 404
        accepted, refused = await asyncio.gather(
            http.post(f"/v1/polls/{poll_id}/votes", json={"option": 1}),
            http.post(f"/v1/polls/{poll_id}/votes", json={"option": 9}))
    assert batch_metric("count") > calls, "the votes went through the batcher"
    assert accepted.status_code == 200 and accepted.json()["option"] == 1, accepted.text
    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert body["code"] == code_pb2.INVALID_ARGUMENT
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert body["details"][0]["fieldViolations"][0]["field"] == "option"


# -- the bridge's batcher alone (gateway/batching.py), with a stand-in for the upstream batch call


def castvote_batcher(send, *, max_pending: int = 10_000):
    from gateway import descriptors
    from gateway.batching import RequestBatcher, batching_options, plan
    from tests.services.polls.conftest import DESCRIPTORS

    raw = DESCRIPTORS.read_bytes()
    ds = descriptors.load(raw)
    method = "agora.polls.v1.PollService.CastVote"
    p = plan(ds, method, batching_options(raw)[method])
    single = ds.message_class(ds.pool.FindMessageTypeByName("agora.polls.v1.CastVoteRequest"))
    return RequestBatcher(p, send, max_pending=max_pending), single, p


async def test_the_bridge_batcher_keys_by_credentials_fails_a_failed_batch_whole_and_is_bounded():
    sent: list = []
    release = asyncio.Event()

    async def send(request, *, metadata, timeout):
        sent.append((len(request.votes), dict(metadata)))
        await release.wait()
        if dict(metadata).get("authorization") == "Bearer broken":
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "upstream gone")
        response = p.response_class()
        for vote in request.votes:
            response.results.add().response.poll_id = vote.poll_id
        return response

    batcher, single, p = castvote_batcher(send, max_pending=7)
    calls = []
    for i, who in enumerate(["Bearer ann", "Bearer ann", "Bearer bob", "Bearer broken", "Bearer ann"]):
        metadata = [("authorization", who), ("x-request-id", f"r{i}"), ("x-forwarded-for", f"10.0.0.{i}")]
        calls.append(batcher.call(single(poll_id=f"p{i}"), metadata, None))
    late = batcher.call(single(poll_id="late"), [("authorization", "Bearer ann")], 0.01)
    with pytest.raises(BridgeError) as full:  # 7 pending: the 8th is refused at once
        for _ in range(3):
            batcher.call(single(poll_id="x"), [], None)
    assert full.value.code == code_pb2.RESOURCE_EXHAUSTED and full.value.http == 429
    with pytest.raises(grpc.aio.AioRpcError) as gave_up:  # a caller's deadline ends its own wait only
        await late
    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert [o.poll_id for o in outcomes[:3]] + [outcomes[4].poll_id] == ["p0", "p1", "p2", "p4"]
    assert isinstance(outcomes[3], grpc.aio.AioRpcError) and outcomes[3].code() == grpc.StatusCode.UNAVAILABLE
    # One batch per credential: ann's four calls (the late one included) in one, bob's, broken's;
    # the request ids and addresses were not in the key, and no address went upstream.
    by_caller = {m["authorization"]: n for n, m in sent if "authorization" in m}
    assert by_caller == {"Bearer ann": 4, "Bearer bob": 1, "Bearer broken": 1}
    assert all("x-forwarded-for" not in m and "x-request-id" not in m for _, m in sent)
    await batcher.close()
