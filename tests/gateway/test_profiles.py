"""HTTP profiles alone: case folding of JSON keys, error bodies in a seed's shape, binding selection."""

from __future__ import annotations

from agora.api.v1 import options_pb2
from agora.auctions.v1 import auctions_pb2
from agora.polls.v1 import polls_pb2

from gateway.profiles import BAD_REQUEST_TYPE, ErrorRule, Profile, field_violations, fold_keys, for_binding


def test_keys_fold_to_json_names_whatever_their_case_nested_ones_too():
    folded = fold_keys({"QUESTION": "q", "options": ["a"], "enddate": "2030-01-01T00:00:00Z", "Other": 1},
                       polls_pb2.SeedCreatePollRequest.DESCRIPTOR)
    assert folded == {"Question": "q", "Options": ["a"], "EndDate": "2030-01-01T00:00:00Z", "Other": 1}
    nested = fold_keys({"poll": {"OPTIONS": [{"description": "x", "VOTES": 2}]}},
                       polls_pb2.SeedGetPollResponse.DESCRIPTOR)
    assert nested == {"poll": {"Options": [{"Description": "x", "Votes": 2}]}}


def test_error_rules_render_the_seeds_bodies():
    profile = Profile(errors=(
        ErrorRule(frozenset({3}), 422, options_pb2.HTTP_ERROR_BODY_FIELD_MAP, "error", ""),
        ErrorRule(frozenset({16}), 401, options_pb2.HTTP_ERROR_BODY_MESSAGE, "message", "must be logged in"),
    ))
    bad = {"code": 3, "message": "bio: too short", "details": [
        {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "bio", "description": "too short"},
                                                        {"field": "bio", "description": "second"}]}]}
    assert profile.render_error(400, bad) == (422, {"bio": "too short"})
    assert profile.render_error(400, {"code": 3, "message": "malformed JSON", "details": []}) == (
        422, {"error": "malformed JSON"})
    assert profile.render_error(401, {"code": 16, "message": "sign in", "details": []}) == (
        401, {"message": "must be logged in"})
    other = {"code": 5, "message": "nope", "details": []}
    assert profile.render_error(404, other) == (404, other)  # no rule: the bridge's own shape
    assert field_violations({"details": ["not a dict"]}) == {}


def test_a_profile_covers_only_the_bindings_it_names():
    declared = options_pb2.HttpProfile(bindings=["POST /api/clients"], ignore_unknown_fields=True)
    assert for_binding(declared, "POST", "/api/clients").ignore_unknown_fields
    assert for_binding(declared, "POST", "/v1/clients") is None
    assert for_binding(None, "GET", "/x") is None
    everywhere = for_binding(options_pb2.HttpProfile(success_status=201), "POST", "/any")
    assert everywhere.success_status == 201


def test_the_declared_profiles_are_read_from_the_generated_descriptors():
    method = auctions_pb2.DESCRIPTOR.services_by_name["AuctionService"].methods_by_name["SeedSubscribe"]
    options = method.GetOptions().Extensions[options_pb2.http_profile]
    assert options.websocket_upgrade_after_headers and options.integer_enums and options.omit_empty
