"""Who is told what, rendering, and the retry schedule (pure)."""

from __future__ import annotations

from agora.common.v1.money_pb2 import Money
from agora.events.v1 import auctions_pb2, orders_pb2, payments_pb2

from services.notifications import domain
from services.notifications.domain import Channel, DeliveryRules, Status


def test_order_events_tell_the_client_once_per_outcome():
    failed = orders_pb2.OrderFailed(order_id="o1", client_id="c1", reason="card_declined",
                                    total=Money(currency_code="USD", amount_minor=1999))
    [intent] = domain.intents("orders.order.failed", failed)
    assert (intent.template, intent.audience) == ("payment_failed", "client:c1")
    subject, body = domain.render(intent.template, Channel.EMAIL, intent.context)
    assert subject == "Payment failed for order o1" and "card declined" in body
    assert domain.intents("payments.payment.failed", payments_pb2.PaymentFailed(order_id="o1")) == []
    assert domain.intents("payments.payment.succeeded", payments_pb2.PaymentSucceeded(order_id="o1")) == []
    _, sms = domain.render("order_paid", Channel.SMS, {"order_id": "o1", "amount": "19.99 USD"})
    assert sms == "Agora: order o1 paid (19.99 USD)."


def test_auction_closed_tells_seller_and_winner():
    closed = auctions_pb2.AuctionClosed(auction_id="a1", seller_id="s", product_name="Lamp", sold=True,
                                        winner_id="w", winner_name="Bo", price=Money(currency_code="EUR",
                                                                                      amount_minor=500))
    intents = domain.intents("auctions.auction.closed", closed)
    assert [(i.template, i.audience) for i in intents] == [("auction_closed", "user:s"),
                                                           ("auction_won", "user:w")]
    assert "5.00 EUR" in domain.render("auction_won", Channel.EMAIL, intents[1].context)[1]


def test_retries_back_off_then_fail():
    rules = DeliveryRules(max_attempts=3, retry_delay=1.0)
    n = domain.queue("e", "orders.order.paid", domain.Intent("order_paid", "client:c", {"order_id": "o"}),
                     Channel.EMAIL, "a@b.c", domain.now())
    once = domain.attempt_failed(n, "down", rules, n.created_at)
    twice = domain.attempt_failed(once, "down", rules, n.created_at)
    assert (once.status, (once.next_attempt_at - n.created_at).total_seconds()) == (Status.RETRYING, 1.0)
    assert (twice.next_attempt_at - n.created_at).total_seconds() == 2.0
    assert domain.attempt_failed(twice, "down", rules, n.created_at).status is Status.FAILED
    assert domain.attempt_failed(n, "550 no such user", rules, n.created_at,
                                 permanent=True).status is Status.FAILED
    assert domain.Notification.from_json(once.to_json()) == once
