"""The Cashier over the SQLite store and the test provider: every documented token, retries, resume
after a crash, cancellation before and after the charge (no servers needed)."""

from __future__ import annotations

import asyncio

import pytest

from services.payments.charging import Cashier
from services.payments.domain import Money, PaymentRules, Status
from services.payments.provider import TestProvider
from services.payments.stores.sqlite import SqlitePaymentStore

RULES = PaymentRules(max_attempts=4, retry_delay=0.01, attempt_timeout=0.2)


@pytest.fixture
async def cashier(tmp_path):
    store = SqlitePaymentStore(tmp_path / "p.sqlite3")
    await store.start()
    yield Cashier(store, TestProvider(), RULES)
    await store.close()


@pytest.mark.parametrize("token,status,reason,attempts", [
    ("tok_ok", Status.SUCCEEDED, "", 1), ("", Status.SUCCEEDED, "", 1),
    ("tok_decline", Status.FAILED, "card_declined", 1),
    ("tok_insufficient_funds", Status.FAILED, "insufficient_funds", 1),
    ("tok_transient", Status.SUCCEEDED, "", 3), ("tok_timeout", Status.FAILED, "provider_timeout", 4),
    ("tok_whatever", Status.FAILED, "invalid_card_token", 1),
])
async def test_tokens(cashier, token, status, reason, attempts):
    p = await cashier.charge(f"o-{token}", "c", "", Money("USD", 100), token)
    assert (p.status, p.failure_reason, p.attempts) == (status, reason, attempts)
    assert (p.id in cashier.provider.charges) == (status is Status.SUCCEEDED)


async def test_redelivery_never_charges_twice(cashier):
    first = await cashier.charge("o-1", "c", "", Money("USD", 100), "tok_ok")
    again = await cashier.charge("o-1", "c", "", Money("USD", 100), "tok_ok")
    assert again == first and cashier.provider.calls[first.id] == 1


async def test_resume_after_a_crash_mid_charge(cashier):
    class Crash(TestProvider):
        async def charge(self, key, token, amount):
            await super().charge(key, token, amount)
            raise asyncio.CancelledError()

    real = cashier.provider
    cashier.provider = Crash(charges=real.charges, calls=real.calls)
    with pytest.raises(asyncio.CancelledError):
        await cashier.charge("o-2", "c", "", Money("USD", 100), "tok_ok")
    stuck = await cashier.store.get_by_order("o-2")
    assert stuck.status is Status.PROCESSING and stuck.attempts == 1
    cashier.provider = real
    done = await cashier.charge("o-2", "c", "", Money("USD", 100), "tok_ok")
    assert done.status is Status.SUCCEEDED and done.provider_reference == real.charges[done.id]
    assert real.calls[done.id] == 2 and len(real.charges) == 1


async def test_cancel_before_charge_and_refund_after(cashier):
    stopped = await cashier.cancel("o-3", "c", "", Money("USD", 100), "order cancelled")
    assert (stopped.status, stopped.failure_reason) == (Status.FAILED, "order_cancelled")
    late = await cashier.charge("o-3", "c", "", Money("USD", 100), "tok_ok")
    assert late.status is Status.FAILED and not cashier.provider.charges
    paid = await cashier.charge("o-4", "c", "", Money("USD", 100), "tok_ok")
    refunded = await cashier.cancel("o-4", "c", "", Money("USD", 100), "order cancelled")
    assert refunded.status is Status.REFUNDED and refunded.refund_reference.startswith("test_")
    assert (await cashier.refund(refunded, "again")) == refunded
    assert paid.id == refunded.id
