"""The orders rules (services/orders/domain.py): placing an order, totals, status changes, history."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from services.kit.errors import FailedPrecondition, InvalidArgument, field_violations
from services.kit.values import Money
from services.orders import domain
from services.orders.domain import Line, ProductInfo, Status

AT = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PRODUCTS = {
    "p1": ProductInfo("p1", "Pen", "s1", Money("USD", 150)),
    "p2": ProductInfo("p2", "Book", "s2", Money("USD", 2999)),
    "eur": ProductInfo("eur", "Croissant", "s3", Money("EUR", 250)),
}


def placed(items=(("p1", 2), ("p2", 1)), at=AT, timeout=timedelta(minutes=10)):
    return domain.place("o1", " c1 ", "u1", list(items), PRODUCTS, at, timeout)


def fields(exc: InvalidArgument) -> set[str]:
    return set(field_violations(exc.details()))


# -- placing an order

def test_place_captures_prices_names_sellers_and_totals():
    order = placed()
    assert order.status is Status.PENDING and order.client_id == "c1" and order.user_id == "u1"
    assert order.items == (Line("p1", 2, Money("USD", 150), "Pen", "s1"),
                           Line("p2", 1, Money("USD", 2999), "Book", "s2"))
    assert [line.total for line in order.items] == [Money("USD", 300), Money("USD", 2999)]
    assert order.total == Money("USD", 3299)
    assert [(c.sequence, c.status, c.reason) for c in order.history] == [(1, Status.PENDING, "order placed")]
    assert order.created_at == order.updated_at == AT
    assert order.payment_due_at == AT + timedelta(minutes=10) and order.last_sequence == 1


def test_place_defaults_to_the_payment_timeout():
    order = domain.place("o1", "c1", "", [("p1", 1)], PRODUCTS, AT)
    assert order.payment_due_at == AT + domain.PAYMENT_TIMEOUT


def test_place_refuses_mixed_currencies():
    with pytest.raises(InvalidArgument) as info:
        placed(items=(("p1", 1), ("eur", 1)))
    assert "EUR, USD" in info.value.message and fields(info.value) == {"items"}


def test_an_order_with_no_lines_totals_zero_in_no_currency():
    empty = dataclasses.replace(placed(), items=())
    assert empty.total == Money("", 0)


def test_check_request_names_every_problem():
    domain.check_request("c1", [("p1", 1)])  # fine: no exception
    with pytest.raises(InvalidArgument) as info:
        domain.check_request(" ", [(" ", 0), ("p2", -3)])
    assert fields(info.value) == {"client_id", "items[0].product_id", "items[0].quantity",
                                  "items[1].quantity"}
    with pytest.raises(InvalidArgument) as info:
        domain.check_request("c1", [])
    assert fields(info.value) == {"items"}


def test_order_id_for_a_request_id_is_stable_and_scoped_to_the_client():
    assert domain.order_id_for("c1", "r1") == domain.order_id_for("c1", "r1")
    assert domain.order_id_for("c1", "r1") != domain.order_id_for("c2", "r1")
    assert domain.order_id_for("c1", "") != domain.order_id_for("c1", "")  # no request id: a fresh id


# -- status changes

def test_paid_moves_a_pending_order_only():
    order = placed()
    paid = domain.paid(order, "pay-1", AT, "evt-1")
    assert paid.status is Status.PAID and paid.payment_id == "pay-1" and paid.updated_at == AT
    assert [(c.sequence, c.status, c.event_id) for c in paid.history[1:]] == [(2, Status.PAID, "evt-1")]
    assert domain.paid(paid, "pay-2", AT, "evt-2") is None
    assert domain.paid(domain.cancel(order, "", AT), "pay-1", AT, "evt-1") is None


def test_payment_failed_is_final_and_keeps_its_reason():
    order = placed()
    failed = domain.payment_failed(order, "pay-1", "card_declined", AT, "evt-1")
    assert failed.status is Status.PAYMENT_FAILED and failed.history[-1].reason == "card_declined"
    assert domain.payment_failed(order, "pay-1", "", AT, "e").history[-1].reason == "payment failed"
    assert failed.is_over() and failed.is_over(paid_before=True)
    assert domain.paid(failed, "pay-1", AT, "evt-2") is None
    with pytest.raises(FailedPrecondition) as info:
        domain.cancel(failed, "changed my mind", AT)
    assert info.value.violation_type == "STATUS" and info.value.subject == "orders/o1"


def test_cancel_pending_or_paid_once():
    order = placed()
    cancelled = domain.cancel(order, "", AT)
    assert cancelled.status is Status.CANCELLED and cancelled.history[-1].reason == "cancelled by client"
    assert domain.cancel(order, "too slow", AT).history[-1].reason == "too slow"
    assert domain.cancel(cancelled, "again", AT) is None
    paid = domain.paid(order, "pay-1", AT, "evt-1")
    assert domain.cancel(paid, "", AT).status is Status.CANCELLED


def test_refunded_follows_a_cancelled_or_paid_order():
    order = placed()
    assert domain.refunded(order, "pay-1", AT, "evt-1") is None  # nothing was charged yet
    paid = domain.paid(order, "pay-1", AT, "evt-1")
    cancelled = domain.cancel(paid, "", AT)
    refunded = domain.refunded(cancelled, "pay-1", AT, "evt-2")
    assert refunded.status is Status.REFUNDED and refunded.is_over()
    assert [c.status for c in refunded.history] == [Status.PENDING, Status.PAID, Status.CANCELLED,
                                                    Status.REFUNDED]
    assert domain.refunded(paid, "pay-1", AT, "evt-3").status is Status.REFUNDED
    assert domain.refunded(refunded, "pay-1", AT, "evt-4") is None
    assert domain.cancel(refunded, "", AT) is None


def test_timed_out_only_past_the_due_time_and_only_pending():
    order = placed(timeout=timedelta(minutes=5))
    assert domain.timed_out(order, AT + timedelta(minutes=4)) is None
    late = domain.timed_out(order, AT + timedelta(minutes=5))
    assert late.status is Status.PAYMENT_FAILED and late.history[-1].reason == "payment timed out"
    assert domain.timed_out(domain.paid(order, "p", AT, "e"), AT + timedelta(hours=1)) is None


def test_a_cancelled_order_is_over_unless_it_was_paid():
    cancelled = domain.cancel(placed(), "", AT)
    assert cancelled.is_over() and not cancelled.is_over(paid_before=True)  # a refund is still to come
    assert not placed().is_over()


# -- history: redeliveries, event ids, the past

def test_caused_by_names_the_event_behind_the_latest_change():
    paid = domain.paid(placed(), "pay-1", AT, "evt-1")
    assert domain.caused_by(paid, "evt-1")
    assert not domain.caused_by(paid, "evt-2") and not domain.caused_by(paid, "")
    assert not domain.caused_by(placed(), "evt-1")


def test_transition_event_id_is_stable_per_change():
    order = placed()
    paid = domain.paid(order, "pay-1", AT, "evt-1")
    assert domain.transition_event_id(paid) == domain.transition_event_id(paid)
    assert domain.transition_event_id(paid) != domain.transition_event_id(order)
    assert domain.transition_event_id(paid) == domain.transition_event_id(
        domain.paid(order, "pay-other", AT + timedelta(seconds=1), "evt-other"))  # same order, same sequence


def test_as_of_rewinds_to_a_history_entry():
    paid = domain.paid(placed(), "pay-1", AT + timedelta(minutes=1), "evt-1")
    cancelled = domain.cancel(paid, "", AT + timedelta(minutes=2))
    then = domain.as_of(cancelled, 2)
    assert then.status is Status.PAID and then.last_sequence == 2
    assert then.updated_at == AT + timedelta(minutes=1)
    first = domain.as_of(cancelled, 1)
    assert first.status is Status.PENDING and first.history == cancelled.history[:1]


def test_now_is_aware_and_to_the_millisecond():
    at = domain.now()
    assert at.tzinfo is not None and at.microsecond % 1000 == 0
