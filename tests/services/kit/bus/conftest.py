"""The bus fixture runs every contract test against both adapters; RabbitMQ groups are deleted afterwards.

`admin` is the dead-letter admin of the same adapter: the in-process bus itself, or RabbitMQ's."""

from __future__ import annotations

import pytest

from services.kit.bus.admin import RabbitAdmin
from services.kit.bus.inprocess import InProcessBus
from services.kit.bus.rabbitmq import RabbitBus
from tests.services.kit.bus.support import unique


class Groups:
    """Unique consumer group names for one test, remembered for clean-up."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __call__(self, stem: str) -> str:
        name = unique(stem)
        self.names.append(name)
        return name


@pytest.fixture
def groups() -> Groups:
    return Groups()


@pytest.fixture(params=["inprocess", "rabbitmq"])
async def bus(request, groups):
    if request.param == "inprocess":
        bus = InProcessBus()
    else:
        bus = RabbitBus(request.getfixturevalue("amqp_url"), reconnect_max_delay=1.0)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
        if isinstance(bus, RabbitBus):
            for group in groups.names:
                await bus.delete_group(group)


@pytest.fixture
def admin(bus, request):
    if isinstance(bus, RabbitBus):
        return RabbitAdmin(request.getfixturevalue("amqp_url"))
    return bus
