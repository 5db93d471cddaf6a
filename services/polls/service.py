"""PollService over gRPC: proto in, proto out. Rules live in domain.py, storage behind store.py.

CastVote answers once the vote and its `polls.vote.cast` event are committed together (group
commit, ballots.py); the tally consumer (handlers.py) counts it; WatchResults follows the tallies
through the results board (live.py). Every replica runs the API, the outbox relay, the closing
clock, the board, and (unless AGORA_POLLS_TALLY_IN_PROCESS=false) a share of the tally consumer
group; with that setting false the consumer runs apart, `python -m services.polls.handlers`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
from agora.events.v1 import polls_pb2 as events
from agora.events.v1.envelope_pb2 import Envelope
from agora.polls.v1 import polls_pb2 as pb
from agora.polls.v1 import polls_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit.auth import SessionResolver, caller, require_caller
from services.kit.bus.envelopes import new_envelope
from services.kit.bus.outbox import OutboxRelay
from services.kit.errors import InvalidArgument, NotFound
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.polls import domain, wire
from services.polls.ballots import BallotBox
from services.polls.closing import ClosingClock
from services.polls.domain import Ballot, CloseReason, Poll, Tally, VoteRequest, now_us
from services.polls.handlers import GROUP, TallyConsumer
from services.polls.live import ResultsBoard
from services.polls.store import PollStore, TallyStore, open_stores

SOURCE = "polls"
log = logging.getLogger("agora.polls")


def _ts(us: int | None) -> Timestamp | None:
    if us is None:
        return None
    ts = Timestamp()
    ts.FromMicroseconds(us)
    return ts


def poll_message(poll: Poll, now: int) -> pb.Poll:
    message = pb.Poll(
        id=poll.id, question=poll.question, vote_policy=int(poll.policy), allow_change=poll.allow_change,
        creator_id=poll.creator_id, created_at=_ts(poll.created_at), closes_at=_ts(poll.closes_at),
        closed_at=_ts(poll.closed_at),
        status=pb.POLL_STATUS_OPEN if poll.is_open(now) else pb.POLL_STATUS_CLOSED,
        options=[pb.PollOption(index=i, text=t) for i, t in enumerate(poll.options)],
    )
    return message


def results_message(poll: Poll, counts: dict[int, int], sequence: int, final: bool) -> pb.PollResults:
    tallies = [pb.OptionTally(index=i, text=t, votes=counts.get(i, 0)) for i, t in enumerate(poll.options)]
    return pb.PollResults(poll_id=poll.id, tallies=tallies, total_votes=sum(t.votes for t in tallies),
                          sequence=sequence, final=final, as_of=_ts(now_us()))


# -- events (written to the outbox in the same transaction as the change they report)


def created_events(poll: Poll) -> list[Envelope]:
    payload = events.PollCreated(
        poll_id=poll.id, question=poll.question, options=list(poll.options), vote_policy=int(poll.policy),
        allow_change=poll.allow_change, creator_id=poll.creator_id, closes_at=_ts(poll.closes_at),
        created_at=_ts(poll.created_at))
    return [new_envelope("polls.poll.created", SOURCE, poll.id, payload, occurred_at=_ts(poll.created_at))]


def vote_event(ballot: Ballot) -> Envelope:
    payload = events.VoteCast(
        vote_id=ballot.vote_id, poll_id=ballot.poll_id, option=ballot.option, voter_key=ballot.voter_key,
        user_id=ballot.user_id, replaces_previous=ballot.replaces_previous, previous_option=ballot.previous_option,
        previous_vote_id=ballot.previous_vote_id, poll_vote_number=ballot.number, cast_at=_ts(ballot.cast_at))
    # Keyed by poll and voter: one voter's votes stay in order (a change follows the vote it
    # replaces), while different voters' votes are counted in parallel, in batches.
    return new_envelope("polls.vote.cast", SOURCE, f"{ballot.poll_id}/{ballot.voter_key}", payload,
                        id=ballot.vote_id, occurred_at=_ts(ballot.cast_at))


def closed_events(reason: CloseReason, closed_by: str):
    def build(poll: Poll, now: int) -> list[Envelope]:
        payload = events.PollClosed(poll_id=poll.id, reason=int(reason), closed_by=closed_by,
                                    accepted_votes=poll.vote_count, closed_at=_ts(now))
        return [new_envelope("polls.poll.closed", SOURCE, poll.id, payload, occurred_at=_ts(now))]

    return build


def _page_token(cursor: tuple[int, str] | None) -> str:
    if cursor is None:
        return ""
    return base64.urlsafe_b64encode(f"{cursor[0]}|{cursor[1]}".encode()).decode().rstrip("=")


def _parse_page_token(token: str) -> tuple[int, str] | None:
    if not token:
        return None
    try:
        created, _, poll_id = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().partition("|")
        if not poll_id:
            raise ValueError
        return int(created), poll_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.field("page_token", "not a token this server issued; start again without one") from None


class PollServicer(polls_pb2_grpc.PollServiceServicer):
    def __init__(self, polls: PollStore, tallies: TallyStore, *, on_commit=lambda: None) -> None:
        self.polls, self.tallies, self.on_commit = polls, tallies, on_commit
        self.box = BallotBox(lambda reqs: self.polls.cast_votes(reqs, now_us(), vote_event), on_commit=on_commit)
        self.board: ResultsBoard[pb.WatchResultsResponse] = ResultsBoard(tallies, self._render)
        self.clock = ClosingClock(self.polls.next_closing, self._close_due)
        self._definitions: dict[str, Poll] = {}  # options never change: cache for rendering

    async def _close_due(self, now: int) -> list[Poll]:
        closed = await self.polls.close_due(now, closed_events(CloseReason.DEADLINE, ""))
        if closed:
            self.on_commit()
        return closed

    async def _poll(self, poll_id: str) -> Poll:
        if not poll_id:
            raise InvalidArgument.field("poll_id", "must not be empty")
        poll = await self.polls.get_poll(poll_id)
        if poll is None:
            raise NotFound.of("poll", poll_id)
        self._remember(poll)
        return poll

    def _remember(self, poll: Poll) -> None:
        if len(self._definitions) > 10_000:
            self._definitions.clear()
        self._definitions[poll.id] = poll

    async def _render(self, tally: Tally) -> pb.WatchResultsResponse | None:
        poll = self._definitions.get(tally.poll_id) or await self.polls.get_poll(tally.poll_id)
        if poll is None:
            return None
        self._remember(poll)
        results = results_message(poll, dict(tally.counts), tally.version, tally.final)
        return pb.WatchResultsResponse(sequence=tally.version, results=results, final=tally.final)

    async def _results(self, poll: Poll) -> pb.PollResults:
        """Final results once consolidated, the live tally before."""
        if poll.closed_at is not None:
            final = await self.polls.final_results(poll.id)
            if final is not None:
                return results_message(poll, dict(final.counts), final.sequence, True)
        tally = (await self.tallies.load([poll.id])).get(poll.id) or Tally(poll.id)
        return results_message(poll, dict(tally.counts), tally.version, False)

    # -- RPCs

    async def CreatePoll(self, request: pb.CreatePollRequest, context) -> pb.CreatePollResponse:
        who = caller()
        now = now_us()
        closes_at = request.closes_at.ToMicroseconds() if request.HasField("closes_at") else None
        draft = domain.validate_draft(request.question, list(request.options), request.vote_policy,
                                      request.allow_change, closes_at, now, who is not None)
        poll = await self.polls.create_poll(str(uuid.uuid4()), draft, who.user_id if who else "", now,
                                            created_events)
        self.on_commit()
        self._remember(poll)
        if poll.closes_at is not None:
            self.clock.poll_scheduled()
        return pb.CreatePollResponse(poll=poll_message(poll, now))

    async def GetPoll(self, request: pb.GetPollRequest, context) -> pb.GetPollResponse:
        poll = await self._poll(request.poll_id)
        return pb.GetPollResponse(poll=poll_message(poll, now_us()), results=await self._results(poll))

    async def ListPolls(self, request: pb.ListPollsRequest, context) -> pb.ListPollsResponse:
        if request.page_size < 0:
            raise InvalidArgument.field("page_size", "must not be negative (0 means the default, 50)")
        limit = min(request.page_size or domain.DEFAULT_PAGE, domain.MAX_PAGE)
        open_only = {pb.POLL_STATUS_OPEN: True, pb.POLL_STATUS_CLOSED: False}.get(request.status)
        now = now_us()
        page = await self.polls.list_polls(limit=limit, after=_parse_page_token(request.page_token),
                                           open_only=open_only, creator_id=request.creator_id, now=now)
        return pb.ListPollsResponse(polls=[poll_message(p, now) for p in page.polls],
                                    next_page_token=_page_token(page.next_cursor))

    async def CastVote(self, request: pb.CastVoteRequest, context) -> pb.CastVoteResponse:
        domain.check_vote_shape(request.poll_id, request.option, request.voter_key, request.request_id)
        who = caller()
        ballot = await self.box.cast(VoteRequest(request.poll_id, request.option, request.voter_key,
                                                 who.user_id if who else "", request.request_id))
        return pb.CastVoteResponse(
            vote_id=ballot.vote_id, poll_id=ballot.poll_id, option=ballot.option,
            replaced_previous=ballot.replaces_previous, previous_option=ballot.previous_option,
            accepted_at=_ts(ballot.cast_at))

    async def ClosePoll(self, request: pb.ClosePollRequest, context) -> pb.ClosePollResponse:
        if not request.poll_id:
            raise InvalidArgument.field("poll_id", "must not be empty")
        who = require_caller()
        now = now_us()
        poll = await self.polls.close_poll(request.poll_id, who.user_id, now,
                                           closed_events(CloseReason.BY_CREATOR, who.user_id))
        self.on_commit()
        results = await self._results(poll)
        if not results.final:
            # Final here only if the tally already counts every vote accepted before the close.
            tally = (await self.tallies.load([poll.id])).get(poll.id) or Tally(poll.id)
            results.final = replace(tally, closed_total=poll.vote_count).complete
        return pb.ClosePollResponse(poll=poll_message(poll, now), results=results)

    # -- the voting seed's own routes: the same polls and counts, in its models' shape

    async def SeedCreatePoll(self, request: pb.SeedCreatePollRequest, context) -> pb.SeedCreatePollResponse:
        created = await self.CreatePoll(pb.CreatePollRequest(
            question=request.question, options=wire.seed_option_texts(list(request.options)),
            closes_at=request.end_date if request.HasField("end_date") else None), context)
        return pb.SeedCreatePollResponse(poll=wire.seed_poll(created.poll, None))

    async def SeedGetPoll(self, request: pb.SeedGetPollRequest, context) -> pb.SeedGetPollResponse:
        poll = await self._poll(request.poll_id)
        return pb.SeedGetPollResponse(poll=wire.seed_poll(poll_message(poll, now_us()), await self._results(poll)))

    async def WatchResults(self, request: pb.WatchResultsRequest, context) -> AsyncIterator[pb.WatchResultsResponse]:
        poll = await self._poll(request.poll_id)

        async def read() -> tuple[pb.WatchResultsResponse, int, bool]:
            results = await self._results(poll)
            message = pb.WatchResultsResponse(sequence=results.sequence, results=results, final=results.final)
            return message, results.sequence, results.final

        async for message in self.board.watch(poll.id, read):
            yield message


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
        "ClosePoll": unary(servicer.ClosePoll, pb.ClosePollRequest, pb.ClosePollResponse),
        "SeedCreatePoll": unary(servicer.SeedCreatePoll, pb.SeedCreatePollRequest, pb.SeedCreatePollResponse),
        "SeedGetPoll": unary(servicer.SeedGetPoll, pb.SeedGetPollRequest, pb.SeedGetPollResponse),
        "WatchResults": grpc.unary_stream_rpc_method_handler(
            servicer.WatchResults, request_deserializer=pb.WatchResultsRequest.FromString,
            response_serializer=SerializeOnce()),
    }
    missing = set(pb.DESCRIPTOR.services_by_name["PollService"].methods_by_name) - set(handlers)
    assert not missing, f"PollService methods without a handler: {missing}"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(DOMAINS["polls"].service, handlers),))


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
    relay = OutboxRelay(bus, polls.outbox, polls.relay_connection)
    servicer = PollServicer(polls, tallies, on_commit=relay.wake)
    consumer = TallyConsumer(polls, tallies, group=tally_group) if run_tally else None

    async def migrate() -> None:
        await polls.migrate()
        await tallies.migrate()

    async def start_consumer() -> None:
        if consumer is not None:
            await consumer.start(bus)

    async def stop_consumer() -> None:
        if consumer is not None:
            await consumer.stop()

    spec = ServiceSpec(
        domain=DOMAINS["polls"],
        register=lambda server: register(servicer, server),
        probes={"poll-store": polls.ping, "tally-store": tallies.ping, "bus": bus_probe(bus)},
        on_start=[migrate, relay.start, servicer.board.start, servicer.clock.start, start_consumer],
        on_stop=[stop_consumer, servicer.clock.stop, servicer.board.stop, relay.stop, polls.close, tallies.close],
        sessions=sessions if sessions is not None else runtime.sessions(),
    )
    spec.servicer = servicer  # type: ignore[attr-defined] - tests and benches reach the parts through it
    spec.consumer = consumer  # type: ignore[attr-defined]
    return spec

