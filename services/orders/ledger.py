"""OrderLedger: an order's status changes as the servicer, the consumers and the clocks all make them.

Its own room (not in service.py) so consumers.py and clocks.py take it without the gRPC servicer,
and are tested with a store alone. A change is read, decided by the rules (domain.py),
compare-and-set in the store with its event (events.py), then announced: the relay is woken and
WatchOrder's log is fed."""

from __future__ import annotations

from collections.abc import Callable

from agora.orders.v1 import orders_pb2 as pb

from services.kit.errors import Aborted
from services.kit.streams import SequencedLog
from services.orders import domain
from services.orders.domain import Order
from services.orders.events import event_for
from services.orders.store import OrderStore
from services.orders.wire import watch_response


class OrderLedger:
    def __init__(self, store: OrderStore, *, wake: Callable[[], None] = lambda: None,
                 capacity: int = 256) -> None:
        self.store = store
        self.wake = wake
        self.log: SequencedLog[str, pb.WatchOrderResponse] = SequencedLog(name="orders", capacity=capacity)

    async def change(self, order_id: str, decide: Callable[[Order], Order | None], *, reason: str = "",
                     cause: str = "", check=None) -> Order | None:
        """Read, decide, compare-and-set, announce; re-read and decide again when another writer won.

        `cause` is the id of the event that asks for the change: if the order's latest change
        already came from it (a redelivery after an interrupted write), its event is queued again."""
        for _ in range(8):
            order = await self.store.get(order_id)
            if order is None:
                return None
            if check is not None:
                check(order)
            after = decide(order)
            if after is None:
                if domain.caused_by(order, cause) and len(order.history) > 1:
                    previous = domain.as_of(order, order.history[-2].sequence)
                    event = event_for(previous, order, reason)
                    if event is not None:
                        await self.store.emit(event)
                        self.wake()
                return order
            if await self.store.transition(after, event_for(order, after, reason), expect=order.status):
                self.announce(after)
                return after
        raise Aborted(f"order {order_id} kept changing under this request; retry")

    def announce(self, order: Order) -> None:
        """After a commit: wake the relay, feed WatchOrder."""
        self.wake()
        change = order.history[-1]
        self.log.append(order.id, change.sequence, watch_response(order, change))
        if order.is_over(paid_before=bool(order.payment_id)):
            self.log.close(order.id)
