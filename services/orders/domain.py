"""Orders as values: placing one (captured prices, totals), status changes and their history (no I/O)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum

from services.kit.errors import FailedPrecondition, InvalidArgument
from services.kit.values import Money

PAYMENT_TIMEOUT = timedelta(minutes=15)
_REQUEST_IDS = uuid.UUID("6f1c2a52-4d0e-4c3b-9a55-0f6e9b1d8a11")


class Status(IntEnum):
    """The proto's OrderStatus numbers."""

    PENDING = 1
    PAID = 2
    PAYMENT_FAILED = 3
    CANCELLED = 4
    REFUNDED = 5


FINAL = {Status.PAYMENT_FAILED, Status.REFUNDED}


@dataclass(frozen=True)
class Line:
    product_id: str
    quantity: int
    unit_price: Money
    product_name: str = ""
    seller_id: str = ""

    @property
    def total(self) -> Money:
        return Money(self.unit_price.currency_code, self.unit_price.amount_minor * self.quantity)


@dataclass(frozen=True)
class StatusChange:
    sequence: int
    status: Status
    at: datetime
    reason: str = ""
    event_id: str = ""


@dataclass(frozen=True)
class Order:
    id: str
    client_id: str
    items: tuple[Line, ...]
    status: Status
    history: tuple[StatusChange, ...]
    created_at: datetime
    updated_at: datetime
    payment_due_at: datetime
    user_id: str = ""
    payment_id: str = ""

    @property
    def total(self) -> Money:
        currency = self.items[0].unit_price.currency_code if self.items else ""
        return Money(currency, sum(line.total.amount_minor for line in self.items))

    @property
    def last_sequence(self) -> int:
        return self.history[-1].sequence if self.history else 0

    def is_over(self, paid_before: bool = False) -> bool:
        """No more status changes will come (WatchOrder ends)."""
        return self.status in FINAL or (self.status is Status.CANCELLED and not paid_before)


@dataclass(frozen=True)
class ProductInfo:
    """What catalog told us about a product when the order was placed."""

    id: str
    name: str
    seller_id: str
    price: Money


def now() -> datetime:
    """Now, to the millisecond (what Cassandra keeps), so every store answers alike."""
    at = datetime.now(timezone.utc)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def check_request(client_id: str, items: list[tuple[str, int]]) -> None:
    problems: dict[str, str] = {}
    if not client_id.strip():
        problems["client_id"] = "required"
    if not items:
        problems["items"] = "at least one item is required"
    for i, (product_id, quantity) in enumerate(items):
        if not product_id.strip():
            problems[f"items[{i}].product_id"] = "required"
        if quantity <= 0:
            problems[f"items[{i}].quantity"] = f"must be positive, not {quantity}"
    if problems:
        raise InvalidArgument.fields(problems)


def order_id_for(client_id: str, request_id: str) -> str:
    """A retried request (same client, same request id) names the same order; otherwise a fresh id."""
    if request_id:
        return str(uuid.uuid5(_REQUEST_IDS, f"{client_id}/{request_id}"))
    return str(uuid.uuid4())


def place(order_id: str, client_id: str, user_id: str, items: list[tuple[str, int]],
          products: dict[str, ProductInfo], at: datetime,
          payment_timeout: timedelta = PAYMENT_TIMEOUT) -> Order:
    """A PENDING order whose lines capture each product's current price, name and seller."""
    lines = tuple(
        Line(pid, qty, products[pid].price, products[pid].name, products[pid].seller_id) for pid, qty in items
    )
    currencies = {line.unit_price.currency_code for line in lines}
    if len(currencies) > 1:
        raise InvalidArgument.field(
            "items", f"products are priced in different currencies: {', '.join(sorted(currencies))}")
    placed = StatusChange(1, Status.PENDING, at, "order placed")
    return Order(id=order_id, client_id=client_id.strip(), items=lines, status=Status.PENDING,
                 history=(placed,), created_at=at, updated_at=at, payment_due_at=at + payment_timeout,
                 user_id=user_id)


def advance(order: Order, status: Status, reason: str, at: datetime, event_id: str = "", **changes) -> Order:
    change = StatusChange(order.last_sequence + 1, status, at, reason, event_id)
    return dataclasses.replace(order, status=status, history=order.history + (change,), updated_at=at,
                               **changes)


def cancel(order: Order, reason: str, at: datetime) -> Order | None:
    """The cancelled order, or None when it is already cancelled/refunded (nothing to do)."""
    if order.status in (Status.CANCELLED, Status.REFUNDED):
        return None
    if order.status is Status.PAYMENT_FAILED:
        raise FailedPrecondition(f"order {order.id} failed its payment; there is nothing to cancel",
                                 "STATUS", f"orders/{order.id}")
    return advance(order, Status.CANCELLED, reason or "cancelled by client", at)


def paid(order: Order, payment_id: str, at: datetime, event_id: str) -> Order | None:
    """`payments.payment.succeeded`: PENDING -> PAID; None when the order has moved on (a cancelled or
    timed-out order's late charge is refunded by payments, which also consumes those events)."""
    if order.status is not Status.PENDING:
        return None
    return advance(order, Status.PAID, "payment succeeded", at, event_id, payment_id=payment_id)


def payment_failed(order: Order, payment_id: str, reason: str, at: datetime, event_id: str) -> Order | None:
    """`payments.payment.failed`: PENDING -> PAYMENT_FAILED (final; stock released); else nothing."""
    if order.status is not Status.PENDING:
        return None
    return advance(order, Status.PAYMENT_FAILED, reason or "payment failed", at, event_id,
                   payment_id=payment_id)


def refunded(order: Order, payment_id: str, at: datetime, event_id: str) -> Order | None:
    """`payments.payment.refunded`: a cancelled (or paid) order's money went back: REFUNDED, final."""
    if order.status not in (Status.CANCELLED, Status.PAID):
        return None
    return advance(order, Status.REFUNDED, "payment refunded", at, event_id, payment_id=payment_id)


def timed_out(order: Order, at: datetime) -> Order | None:
    """No payment outcome by payment_due_at: PAYMENT_FAILED (final; stock released)."""
    if order.status is not Status.PENDING or order.payment_due_at > at:
        return None
    return advance(order, Status.PAYMENT_FAILED, "payment timed out", at)


def caused_by(order: Order, event_id: str) -> bool:
    """The order's latest change came from this event (a redelivery of what was already applied)."""
    return bool(event_id) and bool(order.history) and order.history[-1].event_id == event_id


def transition_event_id(order: Order) -> str:
    """The id of the event a status change publishes: the same however often it is re-emitted."""
    return str(uuid.uuid5(_REQUEST_IDS, f"{order.id}#{order.last_sequence}"))


def as_of(order: Order, sequence: int) -> Order:
    """The order as it was right after history entry `sequence`."""
    history = tuple(c for c in order.history if c.sequence <= sequence)
    return dataclasses.replace(order, history=history, status=history[-1].status, updated_at=history[-1].at)
