"""Chat's event consumers: RoomFanout brings `chat.*` entries posted on any replica to this one's clients.

Each replica consumes through an ephemeral consumer group of its own (every replica must see every
event; the queue goes when the replica does). The feed is idempotent by sequence, so redeliveries
are no-ops, and a lost event is harmless: the next one pulls the gap from the store.
"""

from __future__ import annotations

import uuid

from agora.events.v1.envelope_pb2 import Envelope

from services.chat.events import entry_from
from services.chat.feed import RoomFeed
from services.kit.bus.port import EventBus, Subscription, replica_group


def replica_name() -> str:
    """host-pid plus a random tail: unique per process and per server within one (tests run several)."""
    return f"{replica_group('chat.fanout')}-{uuid.uuid4().hex[:6]}"


class RoomFanout:
    def __init__(self, feed: RoomFeed, replica: str) -> None:
        self.feed = feed
        self.group = replica

    async def handle(self, envelope: Envelope) -> None:
        entry = entry_from(envelope)
        if entry is not None:
            await self.feed.deliver(entry)

    async def subscribe(self, bus: EventBus) -> Subscription:
        """Consume every `chat.*` event into the feed; the subscription's `cancel()` stops it."""
        return await bus.subscribe(self.group, ["chat.#"], self.handle, prefetch=256, ephemeral=True)
