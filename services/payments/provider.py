"""The payment-provider port and the built-in deterministic test provider (the embedded default).

A provider is called with an idempotency key (the payment id): calling it again with the same key
answers the first call's charge instead of charging again. That is what makes a charge interrupted
before its outcome was recorded safe to resume. The test provider's behaviour per card token is
documented in protos/agora/payments/v1/payments.proto.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from services.kit.values import Money


@dataclass(frozen=True)
class Charged:
    reference: str


@dataclass(frozen=True)
class Declined:
    """Final: retrying cannot change the answer."""

    reason: str
    message: str = ""


@dataclass(frozen=True)
class TransientFailure:
    """The provider could not answer this time; retry later with the same key."""

    reason: str
    message: str = ""


ChargeResult = Charged | Declined | TransientFailure


class ProviderUnavailable(Exception):
    """A refund could not reach the provider; nothing changed."""


class PaymentProvider(Protocol):
    name: str

    async def charge(self, idempotency_key: str, card_token: str, amount: Money) -> ChargeResult:
        """Charge once per key; a repeated key answers the first charge's outcome."""

    async def refund(self, idempotency_key: str, charge_reference: str, amount: Money) -> str:
        """Give a charge back in full; the refund's reference. Raises ProviderUnavailable."""


@dataclass
class TestProvider:
    """Deterministic by card token; keeps a ledger so tests (and resumed charges) can see each real charge."""

    __test__ = False  # not a pytest class, whatever its name

    name: str = "test"
    charges: dict[str, str] = field(default_factory=dict)  # idempotency key -> charge reference
    refunds: dict[str, str] = field(default_factory=dict)  # idempotency key -> refund reference
    calls: Counter = field(default_factory=Counter)  # idempotency key -> charge calls seen
    transient_failures: int = 2  # tok_transient fails this many times per key, then succeeds

    async def charge(self, idempotency_key: str, card_token: str, amount: Money) -> ChargeResult:
        self.calls[idempotency_key] += 1
        if idempotency_key in self.charges:
            return Charged(self.charges[idempotency_key])
        token = card_token or "tok_ok"
        if token == "tok_ok":
            return self._charge(idempotency_key)
        if token == "tok_decline":
            return Declined("card_declined", "the card was declined")
        if token == "tok_insufficient_funds":
            return Declined("insufficient_funds", "the card has insufficient funds")
        if token == "tok_transient":
            if self.calls[idempotency_key] <= self.transient_failures:
                return TransientFailure("provider_unavailable", "the provider is temporarily unavailable")
            return self._charge(idempotency_key)
        if token == "tok_timeout":
            await asyncio.Event().wait()  # never answers: the caller's attempt deadline ends it
        return Declined("invalid_card_token", "the card token is not valid")

    def _charge(self, key: str) -> Charged:
        self.charges[key] = f"test_{uuid.uuid4()}"
        return Charged(self.charges[key])

    async def refund(self, idempotency_key: str, charge_reference: str, amount: Money) -> str:
        if idempotency_key not in self.refunds:
            self.refunds[idempotency_key] = f"test_{uuid.uuid4()}"
        return self.refunds[idempotency_key]


def open_provider() -> PaymentProvider:
    """The provider this deployment charges through (only the test provider is built in)."""
    return TestProvider()
