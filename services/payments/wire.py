"""Payments on the wire: the domain's Payment as the API's message (Timestamp and Money from the kit)."""

from __future__ import annotations

from agora.payments.v1 import payments_pb2 as pb

from services.kit.wire import money, optional_timestamp
from services.payments.domain import Payment


def payment(p: Payment) -> pb.Payment:
    return pb.Payment(
        id=p.id, order_id=p.order_id, client_id=p.client_id, user_id=p.user_id, amount=money(p.amount),
        status=int(p.status), provider=p.provider, provider_reference=p.provider_reference,
        attempts=p.attempts, failure_reason=p.failure_reason, card_hint=p.card_hint,
        refund_reference=p.refund_reference, next_attempt_at=optional_timestamp(p.next_attempt_at),
        created_at=optional_timestamp(p.created_at), updated_at=optional_timestamp(p.updated_at),
        completed_at=optional_timestamp(p.completed_at), refunded_at=optional_timestamp(p.refunded_at),
    )
