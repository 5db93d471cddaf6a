"""The kit's declared-rule check (services/kit/validation.py) on the real contract's messages."""

from __future__ import annotations

import pytest
from agora.catalog.v1 import catalog_pb2
from agora.chat.v1 import chat_pb2
from agora.common.v1 import money_pb2
from agora.orders.v1 import orders_pb2
from agora.polls.v1 import polls_pb2

from services.kit import errors, validation


def test_required_lengths_patterns_and_counts_name_each_field():
    found = validation.violations(polls_pb2.CreatePollRequest(question="  ", options=["a", " "]))
    assert found == {"question": "must not be blank", "options[1]": "must not be blank"}
    found = validation.violations(polls_pb2.CreatePollRequest(question="q" * 501, options=["a"] * 101))
    assert found == {"question": "must be at most 500 characters (got 501)",
                     "options": "needs 2 to 100 items (got 101)"}
    assert validation.violations(polls_pb2.CreatePollRequest()) == {"question": "must not be empty",
                                                                  "options": "must not be empty"}


def test_nested_messages_repeated_items_and_pattern_words():
    request = catalog_pb2.CreateProductRequest(product=catalog_pb2.Product(
        name="lamp", price=money_pb2.Money(currency_code="usd", amount_minor=-1)))
    assert validation.violations(request) == {
        "product.seller_id": "must not be empty",
        "product.price.currency_code": "must be an ISO 4217 code, upper case, such as USD",
        "product.price.amount_minor": "must be at least 0 (got -1)",
    }
    order = orders_pb2.CreateOrderRequest(client_id="c", items=[orders_pb2.OrderItemInput(product_id="p")])
    assert validation.violations(order) == {"items[0].quantity": "must be at least 1 (got 0)"}


def test_an_update_is_a_patch_but_keeps_its_bounds():
    patch = catalog_pb2.UpdateProductRequest(product_id="p", product=catalog_pb2.Product(description="x"))
    assert validation.violations(patch) == {}
    long = catalog_pb2.UpdateProductRequest(product_id="p",
                                            product=catalog_pb2.Product(description="x" * 5001))
    assert validation.violations(long) == {
        "product.description": "must be at most 5000 characters (got 5001)"}


def test_enums_are_closed_and_numbers_keep_their_range_at_zero():
    found = validation.violations(polls_pb2.ListPollsRequest(status=77))
    assert set(found) == {"status"} and found["status"].startswith("77 is not one of POLL_STATUS_UNSPECIFIED")
    assert validation.violations(catalog_pb2.AdjustStockRequest(product_id="p")) == {
        "delta": "must not be zero"}
    assert validation.violations(polls_pb2.CastVoteRequest(poll_id="p", option=-1)) == {
        "option": "must be at least 0 (got -1)"}


def test_empty_optional_strings_keep_no_bound_and_bytes_count_bytes():
    # room_id: a slug when given
    assert validation.violations(chat_pb2.CreateRoomRequest(title="General")) == {}
    assert "room_id" in validation.violations(chat_pb2.CreateRoomRequest(title="General", room_id="No Slug"))
    upload = chat_pb2.AttachmentUpload(filename="a.png", data=b"x" * (256 * 1024 + 1))
    assert validation.violations(chat_pb2.SendRequest(attachment=upload)) == {
        "attachment.data": f"must be at most {256 * 1024} bytes (got {256 * 1024 + 1})"}


def test_check_raises_invalid_argument_with_bad_request_details():
    with pytest.raises(errors.InvalidArgument) as refused:
        validation.check(polls_pb2.CreatePollRequest(options=["a", "b"]))
    assert errors.field_violations(refused.value.to_status().details) == {"question": "must not be empty"}
    ok = polls_pb2.CreatePollRequest(question="q", options=["a", "b"])
    assert validation.check(ok) is ok
