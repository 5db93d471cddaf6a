"""Payments as values: the charge of one order, its attempts, retries and outcome (no I/O)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import TYPE_CHECKING

from services.kit.errors import FailedPrecondition
from services.kit.values import Money

if TYPE_CHECKING:
    from services.kit.config import Settings


class Status(IntEnum):
    """The proto's PaymentStatus numbers."""

    PENDING = 1
    PROCESSING = 2
    SUCCEEDED = 3
    FAILED = 4
    REFUNDED = 5


FINAL = {Status.SUCCEEDED, Status.FAILED, Status.REFUNDED}
CANCELLED_REASON = "order_cancelled"


@dataclass(frozen=True)
class PaymentRules:
    """How hard a charge is tried: AGORA_PAYMENTS_MAX_ATTEMPTS / _RETRY_DELAY / _ATTEMPT_TIMEOUT in
    Settings (defaults suit production)."""

    max_attempts: int = 4  # provider calls per charge, the first included
    retry_delay: float = 0.5  # seconds before the 2nd attempt; doubles per attempt
    max_retry_delay: float = 30.0
    attempt_timeout: float = 5.0  # seconds the provider gets to answer one attempt

    @classmethod
    def from_settings(cls, settings: Settings) -> PaymentRules:
        return cls(max_attempts=settings.payments_max_attempts, retry_delay=settings.payments_retry_delay,
                   attempt_timeout=settings.payments_attempt_timeout)

    def delay_after(self, attempts: int) -> float:
        """Back-off before the attempt that follows attempt number `attempts` (1-based)."""
        return min(self.retry_delay * 2 ** max(attempts - 1, 0), self.max_retry_delay)


@dataclass(frozen=True)
class Payment:
    id: str
    order_id: str
    client_id: str
    user_id: str
    amount: Money
    status: Status
    provider: str
    created_at: datetime
    updated_at: datetime
    provider_reference: str = ""
    attempts: int = 0
    failure_reason: str = ""
    card_hint: str = ""
    refund_reference: str = ""
    refund_reason: str = ""
    next_attempt_at: datetime | None = None
    completed_at: datetime | None = None
    refunded_at: datetime | None = None
    # Set by orders.order.cancelled (or a payment timeout): do not charge; refund if charged.
    cancel_requested: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL


def now() -> datetime:
    """Now, to the millisecond, so every store answers alike."""
    at = datetime.now(timezone.utc)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def card_hint(token: str) -> str:
    return (token or "tok_ok")[-4:]


def open_payment(order_id: str, client_id: str, user_id: str, amount: Money, token: str, provider: str,
                 at: datetime) -> Payment:
    """A PENDING payment for an order, before any provider call."""
    return Payment(id=str(uuid.uuid4()), order_id=order_id, client_id=client_id, user_id=user_id,
                   amount=amount, status=Status.PENDING, provider=provider, created_at=at, updated_at=at,
                   card_hint=card_hint(token))


def attempting(p: Payment, at: datetime) -> Payment:
    """Recorded before the provider is called: a crash after the call resumes with the same key."""
    return dataclasses.replace(p, status=Status.PROCESSING, attempts=p.attempts + 1, updated_at=at,
                               next_attempt_at=None)


def succeeded(p: Payment, reference: str, at: datetime) -> Payment:
    return dataclasses.replace(p, status=Status.SUCCEEDED, provider_reference=reference, failure_reason="",
                               updated_at=at, completed_at=at, next_attempt_at=None)


def failed(p: Payment, reason: str, at: datetime) -> Payment:
    return dataclasses.replace(p, status=Status.FAILED, failure_reason=reason, updated_at=at, completed_at=at,
                               next_attempt_at=None)


def retry_later(p: Payment, reason: str, rules: PaymentRules, at: datetime) -> Payment:
    due = at + timedelta(seconds=rules.delay_after(p.attempts))
    return dataclasses.replace(p, status=Status.PENDING, failure_reason=reason, updated_at=at,
                               next_attempt_at=due)


def refunded(p: Payment, reference: str, reason: str, at: datetime) -> Payment:
    return dataclasses.replace(p, status=Status.REFUNDED, refund_reference=reference, refund_reason=reason,
                               updated_at=at, refunded_at=at)


def check_refundable(p: Payment) -> bool:
    """True when a refund is to be made; False when it was already made (idempotent)."""
    if p.status is Status.REFUNDED:
        return False
    if p.status is not Status.SUCCEEDED:
        state = Status(p.status).name
        raise FailedPrecondition(f"payment {p.id} is {state}: only a SUCCEEDED payment can be refunded",
                                 "STATUS", f"payments/{p.id}")
    return True






@dataclass(frozen=True)
class PaymentFilter:
    order_id: str = ""
    client_id: str = ""
    status: Status | None = None
    user_id: str = ""  # set for a signed-in caller: only their payments

    def parts(self) -> tuple[str, ...]:
        return (self.order_id, self.client_id, str(int(self.status or 0)), self.user_id)
