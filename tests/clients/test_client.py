"""The client's parts on their own: targets, retry config, errors, idempotency keys, resume bookkeeping, \
config file."""

from __future__ import annotations

import json
import stat

import grpc
import pytest
from agora.auctions.v1 import auctions_pb2
from agora.client import Agora, AgoraError
from agora.client.calls import with_idempotency_key
from agora.client.mesh import resolve_targets, service_config
from agora.client.resume import resume
from agora.commands import profile
from agora.commands.context import exit_code_for
from agora.commands.formats import money, parse_money
from agora.polls.v1 import polls_pb2
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


def test_targets_host_per_domain_ports_single_address_and_env():
    assert resolve_targets("db.local", port_offset=5, env={})["polls"] == "db.local:50057"
    assert set(resolve_targets("proxy:443", env={}).values()) == {"proxy:443"}
    env = {"AGORA_PORT_OFFSET": "100", "AGORA_POLLS_TARGET": "polls.svc:9000"}
    targets = resolve_targets(None, env=env)
    assert targets["polls"] == "polls.svc:9000" and targets["audit"] == "127.0.0.1:50160"
    assert resolve_targets(None, env={"AGORA_TARGET": "[::1]:7000"})["orders"] == "[::1]:7000"


def test_retry_policy_covers_reads_and_keyed_writes_only():
    config = json.loads(service_config("polls"))["methodConfig"][0]
    names = {n["method"] for n in config["name"]}
    assert {"GetPoll", "ListPolls", "WatchResults", "CastVote", "ClosePoll"} <= names
    assert "CreatePoll" not in names  # not idempotent: a retry could open two polls
    assert config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    chat = {n["method"] for n in json.loads(service_config("chat"))["methodConfig"][0]["name"]}
    assert "Send" in chat and "Chat" not in chat  # a request stream cannot be replayed


def test_an_empty_idempotency_key_is_filled_and_a_given_one_kept():
    request = polls_pb2.CastVoteRequest(poll_id="p", option=1)
    keyed = with_idempotency_key(request, "request_id")
    assert keyed.request_id and not request.request_id  # the caller's message is not changed
    given = polls_pb2.CastVoteRequest(poll_id="p", request_id="mine")
    assert with_idempotency_key(given, "request_id").request_id == "mine"


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code, message, details=()):
        status = status_pb2.Status(code=code.value[0], message=message)
        for d in details:
            packed = any_pb2.Any()
            packed.Pack(d)
            status.details.append(packed)
        self._code, self._message, self._status = code, message, status

    def code(self):
        return self._code

    def details(self):
        return self._message

    def trailing_metadata(self):
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def test_agora_error_decodes_google_rpc_details():
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="option", description="out of range")])
    info = error_details_pb2.ErrorInfo(reason="BID_TOO_LOW", metadata={"minimum_next_bid": "1150"})
    error = AgoraError.from_rpc_error(_FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "too low",
                                                    [bad, info]))
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.message == "too low"
    assert error.field_violations == {"option": "out of range"}
    assert error.reason == "BID_TOO_LOW"
    assert error.detail(error_details_pb2.ErrorInfo).metadata["minimum_next_bid"] == "1150"
    body = error.as_dict()
    assert body["code"] == "FAILED_PRECONDITION"
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


def test_unavailable_server_raises_agora_error_unavailable():
    with Agora("127.0.0.1:1", timeout=5) as agora:
        with pytest.raises(AgoraError) as caught:
            agora.polls.GetPoll(polls_pb2.GetPollRequest(poll_id="x"))
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def _frame(sequence: int) -> auctions_pb2.WatchAuctionResponse:
    return auctions_pb2.WatchAuctionResponse(sequence=sequence, bid=auctions_pb2.BidAccepted(
        bid=auctions_pb2.Bid(sequence=sequence)))


def test_resume_passes_the_last_sequence_and_drops_repeats():
    requests: list[int] = []
    scripts = [[1, 2, "drop"], [2, 3, 4]]  # the second connection repeats 2: it must not reach the caller

    def method(request):
        requests.append(request.resume_from)
        for item in scripts[len(requests) - 1]:
            if item == "drop":
                raise AgoraError(grpc.StatusCode.UNAVAILABLE, "connection lost")
            yield _frame(item)

    retries = []
    got = [f.sequence for f in resume(method, auctions_pb2.WatchAuctionRequest(auction_id="a"),
                                      on_retry=lambda e, n, d: retries.append(n))]
    assert got == [1, 2, 3, 4] and requests == [0, 2] and retries == [1]


def test_resume_gives_up_on_a_final_error():
    def method(request):
        raise AgoraError(grpc.StatusCode.NOT_FOUND, "no such auction")
        yield  # pragma: no cover

    with pytest.raises(AgoraError) as caught:
        list(resume(method, auctions_pb2.WatchAuctionRequest(auction_id="a")))
    assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_config_file_is_written_0600_and_read_back(tmp_path):
    path = tmp_path / "deep" / "config.toml"
    profile.save(path, {"token": 'tok"en\\x', "user_name": "alice"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert profile.load(path) == {"token": 'tok"en\\x', "user_name": "alice"}
    assert profile._parse_flat(path.read_text()) == profile.load(path)  # the Python 3.10 reader agrees


def test_exit_codes_and_money():
    assert exit_code_for(grpc.StatusCode.NOT_FOUND) == 1
    assert exit_code_for(grpc.StatusCode.INVALID_ARGUMENT) == 2
    assert exit_code_for(grpc.StatusCode.UNAVAILABLE) == 3
    assert exit_code_for(grpc.StatusCode.UNAUTHENTICATED) == 4
    assert parse_money("12.5", "usd").amount_minor == 1250 and parse_money("300", "JPY").amount_minor == 300
    assert money(parse_money("1234.5", "EUR")) == "1,234.50 EUR"
