"""Notifications as values: which events tell whom what, rendering per template and channel, and
the delivery state machine with its retries (no I/O)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.kit.config import Settings


class Channel(IntEnum):
    EMAIL = 1
    SMS = 2


class Status(IntEnum):
    QUEUED = 1
    SENT = 2
    FAILED = 3
    RETRYING = 4


@dataclass(frozen=True)
class DeliveryRules:
    """How hard a delivery is tried: AGORA_NOTIFICATIONS_MAX_ATTEMPTS / _RETRY_DELAY in Settings
    (defaults suit production)."""

    max_attempts: int = 6
    retry_delay: float = 2.0  # seconds before the 2nd attempt; doubles per attempt
    max_retry_delay: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryRules:
        return cls(max_attempts=settings.notifications_max_attempts,
                   retry_delay=settings.notifications_retry_delay)

    def delay_after(self, attempts: int) -> float:
        return min(self.retry_delay * 2 ** max(attempts - 1, 0), self.max_retry_delay)


@dataclass(frozen=True)
class Notification:
    id: str
    event_id: str
    event_type: str
    recipient: str
    channel: Channel
    template: str
    subject: str
    body: str
    status: Status
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    last_error: str = ""
    order_id: str = ""
    auction_id: str = ""
    user_id: str = ""
    sent_at: datetime | None = None
    next_attempt_at: datetime | None = None

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        for k in ("created_at", "updated_at", "sent_at", "next_attempt_at"):
            data[k] = data[k].isoformat() if data[k] else None
        data["channel"], data["status"] = int(self.channel), int(self.status)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Notification:
        data = json.loads(text)
        for k in ("created_at", "updated_at", "sent_at", "next_attempt_at"):
            data[k] = datetime.fromisoformat(data[k]) if data[k] else None
        data["channel"], data["status"] = Channel(data["channel"]), Status(data["status"])
        return cls(**data)


def now() -> datetime:
    at = datetime.now(timezone.utc)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


# -- what to tell whom ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Intent:
    """One message an event calls for, to someone not yet resolved to an address."""

    template: str
    audience: str  # "client:<client id>" (customers: e-mail + phone) or "user:<identity user id>" (e-mail)
    context: dict
    order_id: str = ""
    auction_id: str = ""
    user_id: str = ""


def _amount(money) -> str:
    if money is None or not money.currency_code:
        return ""
    return f"{money.amount_minor / 100:.2f} {money.currency_code}"


def intents(event_type: str, payload) -> list[Intent]:
    """The messages an event calls for (none for events that tell nobody anything new)."""
    if event_type.startswith("orders.order."):
        verb = event_type.rsplit(".", 1)[1]
        template = {"created": "order_placed", "paid": "order_paid", "failed": "payment_failed",
                    "cancelled": "order_cancelled"}.get(verb)
        if template is None:
            return []
        context = {"order_id": payload.order_id, "amount": _amount(getattr(payload, "total", None)
                                                                   or getattr(payload, "amount", None)),
                   "reason": getattr(payload, "reason", "").replace("_", " ")}
        return [Intent(template, f"client:{payload.client_id}", context, order_id=payload.order_id,
                       user_id=payload.user_id)]
    if event_type == "payments.payment.refunded":
        context = {"order_id": payload.order_id, "amount": _amount(payload.amount), "reason": payload.reason}
        return [Intent("order_refunded", f"client:{payload.client_id}", context, order_id=payload.order_id,
                       user_id=payload.user_id)]
    if event_type == "auctions.auction.closed":
        context = {"auction_id": payload.auction_id, "product_name": payload.product_name,
                   "winner_name": payload.winner_name,
                   "price": _amount(payload.price) if payload.sold else "",
                   "outcome": "sold" if payload.sold else "closed without bids"}
        out = [Intent("auction_closed", f"user:{payload.seller_id}", context, auction_id=payload.auction_id,
                      user_id=payload.seller_id)]
        if payload.sold and payload.winner_id:
            out.append(Intent("auction_won", f"user:{payload.winner_id}", context,
                              auction_id=payload.auction_id, user_id=payload.winner_id))
        return out
    # payments.payment.succeeded / failed: the order's own events (paid / failed) tell the customer.
    return []


TEMPLATES: dict[str, tuple[str, str, str]] = {
    # template: (e-mail subject, e-mail body, SMS body)
    "order_placed": ("Order {order_id} received",
                     "Thank you! We received your order {order_id} ({amount}) and are taking the payment "
                     "now.",
                     "Agora: order {order_id} received ({amount})."),
    "order_paid": ("Order {order_id} is paid",
                   "Your payment of {amount} for order {order_id} went through. We are preparing it.",
                   "Agora: order {order_id} paid ({amount})."),
    "payment_failed": ("Payment failed for order {order_id}",
                       "We could not take the payment for order {order_id} ({reason}). The order is "
                       "cancelled and nothing was charged. Please place it again with another card.",
                       "Agora: payment for order {order_id} failed ({reason})."),
    "order_cancelled": ("Order {order_id} cancelled",
                        "Your order {order_id} was cancelled ({reason}). Any payment taken will be refunded.",
                        "Agora: order {order_id} cancelled."),
    "order_refunded": ("Refund for order {order_id}",
                       "We refunded {amount} for order {order_id}.",
                       "Agora: {amount} refunded for order {order_id}."),
    "auction_won": ("You won: {product_name}",
                    "Congratulations {winner_name}, you won the auction for {product_name} at {price}.",
                    "Agora: you won {product_name} at {price}."),
    "auction_closed": ("Your auction closed: {product_name}",
                       "Your auction for {product_name} has closed: {outcome}. {winner_name} {price}",
                       "Agora: auction for {product_name} closed ({outcome})."),
}


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def render(template: str, channel: Channel, context: dict) -> tuple[str, str]:
    """(subject, body); SMS has no subject."""
    subject, body, sms = TEMPLATES[template]
    values = _Blank(context)
    if channel is Channel.SMS:
        return "", sms.format_map(values)
    return subject.format_map(values), body.format_map(values).strip()


def queue(event_id: str, event_type: str, intent: Intent, channel: Channel, recipient: str,
          at: datetime) -> Notification:
    subject, body = render(intent.template, channel, intent.context)
    return Notification(id=str(uuid.uuid4()), event_id=event_id, event_type=event_type,
                        recipient=recipient.strip().lower() if channel is Channel.EMAIL
                        else recipient.strip(),
                        channel=channel, template=intent.template, subject=subject, body=body,
                        status=Status.QUEUED,
                        created_at=at, updated_at=at, order_id=intent.order_id, auction_id=intent.auction_id,
                        user_id=intent.user_id)


# -- delivery -------------------------------------------------------------------------------------

def delivered(n: Notification, at: datetime) -> Notification:
    return dataclasses.replace(n, status=Status.SENT, attempts=n.attempts + 1, updated_at=at, sent_at=at,
                               next_attempt_at=None, last_error="")


def attempt_failed(n: Notification, error: str, rules: DeliveryRules, at: datetime, *, permanent: bool = False
                   ) -> Notification:
    attempts = n.attempts + 1
    if permanent or attempts >= rules.max_attempts:
        return dataclasses.replace(n, status=Status.FAILED, attempts=attempts, last_error=error[:500],
                                   updated_at=at, next_attempt_at=None)
    return dataclasses.replace(n, status=Status.RETRYING, attempts=attempts, last_error=error[:500],
                               updated_at=at,
                               next_attempt_at=at + timedelta(seconds=rules.delay_after(attempts)))


# -- queries --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NotificationFilter:
    recipient: str = ""
    order_id: str = ""
    channel: Channel | None = None
    status: Status | None = None
    user_id: str = ""  # set for a signed-in caller: only theirs

    def normalised(self) -> NotificationFilter:
        return dataclasses.replace(self, recipient=self.recipient.strip().lower() if "@" in self.recipient
                                   else self.recipient.strip(), order_id=self.order_id.strip())

    def matches(self, n: Notification) -> bool:
        return ((not self.recipient or n.recipient == self.recipient)
                and (not self.order_id or n.order_id == self.order_id)
                and (self.channel is None or n.channel == self.channel)
                and (self.status is None or n.status == self.status)
                and (not self.user_id or n.user_id == self.user_id))

    def parts(self) -> tuple[str, ...]:
        return (self.recipient, self.order_id, str(int(self.channel or 0)), str(int(self.status or 0)),
                self.user_id)



