"""PollService over gRPC: proto in, proto out. Rules live in domain.py, storage behind store.py,
protos in wire.py, event envelopes in events.py.

CastVote answers once the vote and its `polls.vote.cast` event are committed together (group
commit, ballots.py); the tally consumer (consumers.py) counts it; WatchResults follows the tallies
through the results board (live.py). Each part is given what it needs when build() makes it, so
nothing calls back into the servicer. Every replica runs the API, the outbox relay, the closing
clock (clocks.py), the board, and (unless AGORA_POLLS_TALLY_IN_PROCESS=false) a share of the tally
consumer group; with that setting false the consumer runs apart, `python -m services.polls.handlers`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
from agora.polls.v1 import polls_pb2 as pb
from agora.polls.v1 import polls_pb2_grpc

from services.kit import paging, validation
from services.kit.auth import SessionResolver, caller, require_caller
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import DomainError, InvalidArgument, NotFound
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.polls import domain, wire
from services.polls.ballots import BallotBox
from services.polls.clocks import ClosingClock
from services.polls.consumers import GROUP, TallyConsumer
from services.polls.domain import CloseReason, Poll, Tally, VoteRequest, now_us
from services.polls.events import closed_events, created_events, votes_event
from services.polls.live import PollDefinitions, ResultsBoard
from services.polls.store import PollStore, TallyStore, open_stores

log = logging.getLogger("agora.polls")


class PollServicer(polls_pb2_grpc.PollServiceServicer):
    """`wake()` (the outbox relay's) runs after each commit of its own; votes go through `box`,
    which wakes the relay itself, and watchers through `board`."""

    def __init__(self, polls: PollStore, tallies: TallyStore, *, box: BallotBox, board: ResultsBoard,
                 clock: ClosingClock, wake=lambda: None) -> None:
        self.polls, self.tallies, self.wake = polls, tallies, wake
        self.box, self.board, self.clock = box, board, clock
        self.definitions: PollDefinitions = board.definitions

    async def _poll(self, poll_id: str) -> Poll:
        if not poll_id:
            raise InvalidArgument.field("poll_id", "must not be empty")
        poll = await self.polls.get_poll(poll_id)
        if poll is None:
            raise NotFound.of("poll", poll_id)
        self.definitions.remember(poll)
        return poll

    async def _results(self, poll: Poll) -> pb.PollResults:
        """Final results once consolidated, the live tally before."""
        if poll.closed_at is not None:
            final = await self.polls.final_results(poll.id)
            if final is not None:
                return wire.results_message(poll, dict(final.counts), final.sequence, True)
        tally = (await self.tallies.load([poll.id])).get(poll.id) or Tally(poll.id)
        return wire.results_message(poll, dict(tally.counts), tally.version, False)

    # -- RPCs

    async def CreatePoll(self, request: pb.CreatePollRequest, context) -> pb.CreatePollResponse:
        who = caller()
        now = now_us()
        closes_at = wire.micros(request.closes_at) if request.HasField("closes_at") else None
        draft = domain.validate_draft(request.question, list(request.options), request.vote_policy,
                                      request.allow_change, closes_at, now, who is not None)
        poll = await self.polls.create_poll(str(uuid.uuid4()), draft, who.user_id if who else "", now,
                                            created_events)
        self.wake()
        self.definitions.remember(poll)
        if poll.closes_at is not None:
            self.clock.poll_scheduled()
        return pb.CreatePollResponse(poll=wire.poll_message(poll, now))

    async def GetPoll(self, request: pb.GetPollRequest, context) -> pb.GetPollResponse:
        poll = await self._poll(request.poll_id)
        return pb.GetPollResponse(poll=wire.poll_message(poll, now_us()), results=await self._results(poll))

    async def ListPolls(self, request: pb.ListPollsRequest, context) -> pb.ListPollsResponse:
        if request.page_size < 0:  # polls' message says what 0 means (the kit's says only "negative")
            raise InvalidArgument.field("page_size", "must not be negative (0 means the default, 50)")
        limit = paging.page_size(request.page_size, default=domain.DEFAULT_PAGE, maximum=domain.MAX_PAGE)
        open_only = {pb.POLL_STATUS_OPEN: True, pb.POLL_STATUS_CLOSED: False}.get(request.status)
        now = now_us()
        page = await self.polls.list_polls(limit=limit, after=wire.page_cursor(request.page_token),
                                           open_only=open_only, creator_id=request.creator_id, now=now)
        return pb.ListPollsResponse(polls=[wire.poll_message(p, now) for p in page.polls],
                                    next_page_token=wire.page_token(page.next_cursor))

    async def CastVote(self, request: pb.CastVoteRequest, context) -> pb.CastVoteResponse:
        domain.check_vote_shape(request.poll_id, request.option, request.voter_key, request.request_id)
        who = caller()
        ballot = await self.box.cast(VoteRequest(request.poll_id, request.option, request.voter_key,
                                                 who.user_id if who else "", request.request_id))
        return wire.cast_vote_response(ballot)

    async def CastVotes(self, request: pb.CastVotesRequest | UncheckedVotes, context) -> pb.CastVotesResponse:
        """Each vote is checked and decided on its own (its refusal is its result's status); the
        accepted ones are one transaction and one `polls.votes.cast` event (ballots.py has the
        single votes' group commit, whose events are one per vote)."""
        if isinstance(request, UncheckedVotes):
            request = request.batch
        if not 1 <= len(request.votes) <= domain.MAX_BATCH:
            raise InvalidArgument.field(
                "votes", f"must hold 1..{domain.MAX_BATCH} votes, not {len(request.votes)}")
        who = caller()
        user_id = who.user_id if who else ""
        results: list[pb.CastVoteResult | None] = [None] * len(request.votes)
        positions, votes = [], []
        for i, vote in enumerate(request.votes):
            try:
                validation.check(vote)  # the bounds the kit checks on a single CastVote, per vote here
                domain.check_vote_shape(vote.poll_id, vote.option, vote.voter_key, vote.request_id)
            except DomainError as refused:
                results[i] = pb.CastVoteResult(status=refused.to_status())
                continue
            positions.append(i)
            votes.append(VoteRequest(vote.poll_id, vote.option, vote.voter_key, user_id, vote.request_id))
        if votes:
            outcomes = await self.polls.cast_vote_batch(votes, now_us(), votes_event)
            self.wake()
            for i, outcome in zip(positions, outcomes):
                results[i] = wire.cast_vote_result(outcome)
        return pb.CastVotesResponse(results=results)

    async def ClosePoll(self, request: pb.ClosePollRequest, context) -> pb.ClosePollResponse:
        if not request.poll_id:
            raise InvalidArgument.field("poll_id", "must not be empty")
        who = require_caller()
        now = now_us()
        poll = await self.polls.close_poll(request.poll_id, who.user_id, now,
                                           closed_events(CloseReason.BY_CREATOR, who.user_id))
        self.wake()
        results = await self._results(poll)
        if not results.final:
            # Final here only if the tally already counts every vote accepted before the close.
            tally = (await self.tallies.load([poll.id])).get(poll.id) or Tally(poll.id)
            results.final = replace(tally, closed_total=poll.vote_count).complete
        return pb.ClosePollResponse(poll=wire.poll_message(poll, now), results=results)

    # -- the voting seed's own routes: the same polls and counts, in its models' shape

    async def SeedCreatePoll(self, request: pb.SeedCreatePollRequest, context) -> pb.SeedCreatePollResponse:
        created = await self.CreatePoll(pb.CreatePollRequest(
            question=request.question, options=wire.seed_option_texts(list(request.options)),
            closes_at=request.end_date if request.HasField("end_date") else None), context)
        return pb.SeedCreatePollResponse(poll=wire.seed_poll(created.poll, None))

    async def SeedGetPoll(self, request: pb.SeedGetPollRequest, context) -> pb.SeedGetPollResponse:
        poll = await self._poll(request.poll_id)
        return pb.SeedGetPollResponse(
            poll=wire.seed_poll(wire.poll_message(poll, now_us()), await self._results(poll)))

    async def WatchResults(self, request: pb.WatchResultsRequest,
                           context) -> AsyncIterator[pb.WatchResultsResponse]:
        poll = await self._poll(request.poll_id)

        async def read() -> tuple[pb.WatchResultsResponse, int, bool]:
            results = await self._results(poll)
            return wire.watch_message(results), results.sequence, results.final

        async for message in self.board.watch(poll.id, read):
            yield message


class UncheckedVotes:
    """A CastVotes request on its way past the kit's request check (services/kit/validation.py),
    which would refuse the whole batch for one vote out of bounds: CastVotes answers that vote
    alone, with the same check and message a single CastVote gets, and the others are counted.
    (Not a Message, so the interceptor's check hands it on as it is.)"""

    __slots__ = ("batch",)

    def __init__(self, batch: pb.CastVotesRequest) -> None:
        self.batch = batch

    @classmethod
    def parse(cls, raw: bytes) -> UncheckedVotes:
        return cls(pb.CastVotesRequest.FromString(raw))


class SerializeOnce:
    """A response serializer that remembers the last message: a results snapshot fanned out to
    a thousand watchers is one shared object, so it is serialized once, not a thousand times."""

    def __init__(self) -> None:
        self._last: object = None
        self._bytes = b""

    def __call__(self, message) -> bytes:
        if message is not self._last:
            self._last, self._bytes = message, message.SerializeToString()
        return self._bytes


def register(servicer: PollServicer, server: grpc.aio.Server) -> None:
    """The generated registration, except that WatchResults serializes each shared snapshot once."""
    def unary(method, request, response):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request.FromString, response_serializer=response.SerializeToString)

    handlers = {
        "CreatePoll": unary(servicer.CreatePoll, pb.CreatePollRequest, pb.CreatePollResponse),
        "GetPoll": unary(servicer.GetPoll, pb.GetPollRequest, pb.GetPollResponse),
        "ListPolls": unary(servicer.ListPolls, pb.ListPollsRequest, pb.ListPollsResponse),
        "CastVote": unary(servicer.CastVote, pb.CastVoteRequest, pb.CastVoteResponse),
        "CastVotes": grpc.unary_unary_rpc_method_handler(
            servicer.CastVotes, request_deserializer=UncheckedVotes.parse,
            response_serializer=pb.CastVotesResponse.SerializeToString),
        "ClosePoll": unary(servicer.ClosePoll, pb.ClosePollRequest, pb.ClosePollResponse),
        "SeedCreatePoll": unary(servicer.SeedCreatePoll, pb.SeedCreatePollRequest, pb.SeedCreatePollResponse),
        "SeedGetPoll": unary(servicer.SeedGetPoll, pb.SeedGetPollRequest, pb.SeedGetPollResponse),
        "WatchResults": grpc.unary_stream_rpc_method_handler(
            servicer.WatchResults, request_deserializer=pb.WatchResultsRequest.FromString,
            response_serializer=SerializeOnce()),
    }
    missing = set(pb.DESCRIPTOR.services_by_name["PollService"].methods_by_name) - set(handlers)
    assert not missing, f"PollService methods without a handler: {missing}"
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(DOMAINS["polls"].service, handlers),))


def tally_in_process(settings) -> bool:
    """Whether the polls server runs the tally consumer: AGORA_POLLS_TALLY_IN_PROCESS, except that
    embedded backends always do (a process of its own could not see the in-process bus)."""
    if settings.polls_tally_in_process:
        return True
    if not settings.real:
        log.warning("AGORA_POLLS_TALLY_IN_PROCESS=false ignored: with embedded backends the bus is "
                    "in-process, so the tally consumer runs in the polls server")
        return True
    return False


async def build(runtime, *, sessions: SessionResolver | None = None, run_tally: bool | None = None,
                schema: str = "polls", mongo_db: str | None = None, sqlite_path: str | None = None,
                tally_group: str = GROUP) -> ServiceSpec:
    """The polls server: API, outbox relay, closing clock, results board and tally consumer.

    `run_tally`: None follows the settings (`tally_in_process`); True or False as given."""
    if run_tally is None:
        run_tally = tally_in_process(runtime.settings)
    polls, tallies = open_stores(runtime.settings, schema=schema, mongo_db=mongo_db, sqlite_path=sqlite_path)
    bus = await runtime.bus()
    relay = outbox_relay(bus, polls)
    board = ResultsBoard(tallies, PollDefinitions(polls))
    clock = ClosingClock(polls, wake=relay.wake)
    servicer = PollServicer(polls, tallies, box=BallotBox(polls, wake=relay.wake), board=board, clock=clock,
                            wake=relay.wake)
    consumer = TallyConsumer(polls, tallies, group=tally_group) if run_tally else None
    spec = ServiceSpec(
        domain=DOMAINS["polls"],
        register=lambda server: register(servicer, server),
        probes={"poll-store": polls.ping, "tally-store": tallies.ping, "bus": bus_probe(bus)},
        stores=[polls, tallies], relay=relay, workers=[board, clock],
        consumers=[consumer] if consumer is not None else [], bus=bus,
        sessions=sessions if sessions is not None else runtime.sessions(),
    )
    spec.servicer = servicer  # type: ignore[attr-defined] - tests and benches reach the parts through it
    spec.consumer = consumer  # type: ignore[attr-defined]
    return spec
