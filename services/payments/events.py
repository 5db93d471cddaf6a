"""The payments domain's event envelopes: a payment succeeded, failed or was refunded."""

from __future__ import annotations

from agora.events.v1 import payments_pb2 as events

from services.kit.bus import new_envelope
from services.kit.wire import money, timestamp
from services.payments.domain import Payment


def succeeded_event(p: Payment):
    return new_envelope("payments.payment.succeeded", "payments", p.order_id, events.PaymentSucceeded(
        payment_id=p.id, order_id=p.order_id, client_id=p.client_id, user_id=p.user_id,
        amount=money(p.amount),
        provider=p.provider, provider_reference=p.provider_reference, card_hint=p.card_hint,
        attempts=p.attempts, succeeded_at=timestamp(p.completed_at)), occurred_at=timestamp(p.completed_at))


def failed_event(p: Payment, message: str = ""):
    return new_envelope("payments.payment.failed", "payments", p.order_id, events.PaymentFailed(
        payment_id=p.id, order_id=p.order_id, client_id=p.client_id, user_id=p.user_id,
        amount=money(p.amount),
        reason=p.failure_reason, message=message, attempts=p.attempts, failed_at=timestamp(p.completed_at)),
        occurred_at=timestamp(p.completed_at))


def refunded_event(p: Payment):
    return new_envelope("payments.payment.refunded", "payments", p.order_id, events.PaymentRefunded(
        payment_id=p.id, order_id=p.order_id, client_id=p.client_id, user_id=p.user_id,
        amount=money(p.amount),
        refund_reference=p.refund_reference, reason=p.refund_reason, refunded_at=timestamp(p.refunded_at)),
        occurred_at=timestamp(p.refunded_at))
