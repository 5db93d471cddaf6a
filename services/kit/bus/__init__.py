"""The event bus: one port (port.EventBus), a RabbitMQ adapter and an in-process twin, plus outbox and inbox.

    bus = open_bus(settings); await bus.start()
    await bus.publish([new_envelope("polls.vote.cast", "polls", poll_id, VoteCast(...))])
    await bus.subscribe("polls.tally", ["polls.vote.cast"], handler)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.kit.bus.envelopes import new_envelope, unpack
from services.kit.bus.port import DeadLetter, EventBus, Handler, Subscription

if TYPE_CHECKING:
    from services.kit.config import Settings

__all__ = ["DeadLetter", "EventBus", "Handler", "Subscription", "new_envelope", "open_bus", "unpack"]


def open_bus(settings: Settings) -> EventBus:
    """RabbitMQ when the settings ask for real backends, the in-process bus otherwise (not started yet)."""
    if settings.real:
        from services.kit.bus.rabbitmq import RabbitBus

        return RabbitBus(settings.amqp_url)
    from services.kit.bus.inprocess import InProcessBus

    return InProcessBus()
