"""Charging an order exactly once, and refunding it: the provider calls around the store's records.

The order of steps is what makes a redelivered or resumed charge safe: the payment row (unique per
order) exists before the provider is called; each attempt is recorded (PROCESSING, attempts + 1)
before the call; the provider is called with the payment id as its idempotency key; the outcome
and its event are committed together (outbox). A process killed after the provider charged but
before the outcome was recorded leaves the event unacknowledged: on redelivery the charge resumes
with the same key, and the provider answers the charge it already made instead of charging again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from services.kit.errors import Unavailable
from services.kit.values import Money
from services.payments import domain
from services.payments.domain import CANCELLED_REASON, Payment, PaymentRules, Status
from services.payments.events import failed_event, refunded_event, succeeded_event
from services.payments.provider import Charged, Declined, PaymentProvider, ProviderUnavailable
from services.payments.store import PaymentStore

log = logging.getLogger("agora.payments")


class Cashier:
    """Charges and refunds through the provider, recording every step in the store."""

    def __init__(self, store: PaymentStore, provider: PaymentProvider, rules: PaymentRules, *,
                 wake=lambda: None) -> None:
        self.store, self.provider, self.rules, self.wake = store, provider, rules, wake

    async def charge(self, order_id: str, client_id: str, user_id: str, amount: Money,
                     card_token: str) -> Payment:
        """Charge the order unless it already has an outcome; the payment as it ends up."""
        payment, _ = await self.store.open(domain.open_payment(order_id, client_id, user_id, amount,
                                                               card_token, self.provider.name, domain.now()))
        while not payment.final:
            if payment.cancel_requested:
                return await self._finish(payment, domain.failed(payment, CANCELLED_REASON, domain.now()),
                                          "the order was cancelled before it was charged")
            if payment.attempts >= self.rules.max_attempts:
                reason = payment.failure_reason or "provider_unavailable"
                return await self._finish(payment, domain.failed(payment, reason, domain.now()),
                                          "gave up after the last retry")
            if payment.next_attempt_at is not None:
                wait = (payment.next_attempt_at - domain.now()).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
                    payment = await self.store.get(payment.id)
                    continue
            attempt = domain.attempting(payment, domain.now())
            if not await self.store.save(attempt, {Status.PENDING, Status.PROCESSING}):
                payment = await self.store.get(payment.id)
                continue
            payment = attempt
            try:
                result = await asyncio.wait_for(self.provider.charge(payment.id, card_token, amount),
                                                self.rules.attempt_timeout)
            except asyncio.TimeoutError:
                result = None
            if isinstance(result, Charged):
                payment = await self._finish(payment,
                                             domain.succeeded(payment, result.reference, domain.now()))
                break
            if isinstance(result, Declined):
                return await self._finish(payment, domain.failed(payment, result.reason, domain.now()),
                                          result.message)
            reason = result.reason if result is not None else "provider_timeout"
            log.info("payment %s attempt %d failed transiently: %s", payment.id, payment.attempts, reason)
            if payment.attempts >= self.rules.max_attempts:
                return await self._finish(payment, domain.failed(payment, reason, domain.now()),
                                          "gave up after the last retry")
            later = domain.retry_later(payment, reason, self.rules, domain.now())
            if await self.store.save(later, {Status.PROCESSING}):
                payment = later
            else:
                payment = await self.store.get(payment.id)
        if payment.status is Status.SUCCEEDED:
            fresh = await self.store.get(payment.id)
            if fresh.cancel_requested:  # cancelled while the charge was under way: give it back
                return await self.refund(fresh, "order cancelled")
        return payment

    async def _finish(self, before: Payment, after: Payment, message: str = "") -> Payment:
        event = succeeded_event(after) if after.status is Status.SUCCEEDED else failed_event(after, message)
        if await self.store.save(after, {before.status}, event):
            self.wake()
            return after
        return await self.store.get(before.id)

    async def cancel(self, order_id: str, client_id: str, user_id: str, amount: Money,
                     reason: str) -> Payment:
        """The order was cancelled (or timed out): stop charging it, refund it if it was charged.

        The cancellation may overtake the order's `created` event (another consumer group): then a
        FAILED payment is recorded first, so the charge, when its event comes, finds it over."""
        payment = await self.store.request_cancel(order_id)
        if payment is None:
            tombstone = dataclasses.replace(
                domain.open_payment(order_id, client_id, user_id, amount, "", self.provider.name,
                                    domain.now()),
                card_hint="", cancel_requested=True)
            payment, created = await self.store.open(tombstone)
            if created:
                return await self._finish(payment, domain.failed(payment, CANCELLED_REASON, domain.now()),
                                          "the order was cancelled before it was charged")
            payment = await self.store.request_cancel(order_id)
        if payment.status is Status.SUCCEEDED:
            return await self.refund(payment, reason)
        return payment

    async def refund(self, payment: Payment, reason: str) -> Payment:
        if not domain.check_refundable(payment):
            return payment
        try:
            reference = await asyncio.wait_for(
                self.provider.refund(payment.id, payment.provider_reference, payment.amount),
                self.rules.attempt_timeout)
        except (ProviderUnavailable, asyncio.TimeoutError):
            raise Unavailable("the payment provider could not be reached; nothing changed; retry") from None
        done = domain.refunded(payment, reference, reason or "refund requested", domain.now())
        if await self.store.save(done, {Status.SUCCEEDED}, refunded_event(done)):
            self.wake()
            return done
        return await self.store.get(payment.id)
