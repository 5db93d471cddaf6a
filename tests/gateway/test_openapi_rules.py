"""/openapi.json states what the kit enforces: required, readOnly, bounds, closed enums, bodies."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import descriptors
from gateway.openapi import build_openapi
from gateway.routes import build_bindings

DESCRIPTORS = Path(__file__).resolve().parents[2] / "clients/python/agora/descriptors.binpb"


@pytest.fixture(scope="module")
def doc():
    ds = descriptors.load(DESCRIPTORS.read_bytes())
    return build_openapi(ds, build_bindings(ds))


def schema(doc, name):
    return doc["components"]["schemas"][name]


def test_required_bounds_and_patterns(doc):
    poll = schema(doc, "agora.polls.v1.CreatePollRequest")
    assert poll["required"] == ["question", "options"] and poll["additionalProperties"] is False
    assert {k: poll["properties"]["question"][k] for k in ("maxLength", "minLength", "pattern")} == {
        "maxLength": 500, "minLength": 1, "pattern": r"\S"}
    options = poll["properties"]["options"]
    assert (options["minItems"], options["maxItems"], options["items"]["maxLength"]) == (2, 100, 200)
    money = schema(doc, "agora.common.v1.Money")
    assert money["required"] == ["currencyCode"] \
        and money["properties"]["currencyCode"]["pattern"] == "^[A-Z]{3}$"
    room = schema(doc, "agora.chat.v1.CreateRoomRequest")["properties"]["roomId"]
    assert room["pattern"].startswith("^$|") and room["type"] == ["string", "null"]  # optional: empty allowed


def test_output_only_is_read_only(doc):
    product = schema(doc, "agora.catalog.v1.Product")["properties"]
    assert product["id"]["readOnly"] is True and product["createdAt"]["readOnly"] is True
    assert "readOnly" not in product["name"]


def test_enums_are_closed(doc):
    status = schema(doc, "agora.orders.v1.OrderStatus")
    names, numbers = status["anyOf"]
    assert "ORDER_STATUS_PAID" in names["enum"] and numbers["enum"][0] == 0 and "enum" in numbers


def test_bodies_leave_out_path_fields_and_updates_are_patches(doc):
    bid = doc["paths"]["/v1/auctions/{auction_id}/bids"]["post"]["requestBody"]
    body = bid["content"]["application/json"]["schema"]
    assert "auctionId" not in body["properties"] and body["required"] == ["amount"] \
        and bid["required"] is True
    patch = \
        doc["paths"]["/v1/products/{product_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert "required" not in patch and patch["properties"]["name"]["maxLength"] == 200


def test_path_and_query_parameters_carry_bounds(doc):
    params = {p["name"]: p for p in doc["paths"]["/v1/polls"]["get"]["parameters"]}
    assert params["pageSize"]["schema"]["minimum"] == 0
    room = {p["name"]: p for p in doc["paths"]["/v1/rooms/{room_id}"]["get"]["parameters"]}["room_id"]
    assert room["required"] is True and "pattern" in room["schema"]
