"""The whole order -> payment -> notification pipeline on real ports: identity, customers, catalog,
orders, payments, notifications, audit and the bridge, embedded or real, plus a real local SMTP
server (aiosmtpd) the notifications relay to. Names unique to the run; cleaned up after."""

from __future__ import annotations

import asyncio
import dataclasses
import email
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import Message

from aiosmtpd.controller import Controller

from services.identity import service as identity_service
from services.identity.store import open_store as open_identity_store
from services.kit.config import Settings
from services.notifications import service as notifications_service
from services.notifications.domain import DeliveryRules
from services.notifications.senders import LoggingSmsProvider, SmtpSettings
from services.orders import service as orders_service
from services.payments import service as payments_service
from services.payments.domain import PaymentRules
from services.payments.provider import TestProvider
from tests.services.identity.harness import TEST_IDENTITY_RULES
from tests.services.orders import commerce as harness

DOMAINS = ("identity", "customers", "catalog", "orders", "payments", "notifications", "audit")
FAST_PAYMENTS = PaymentRules(max_attempts=4, retry_delay=0.05, attempt_timeout=0.5)
FAST_DELIVERY = DeliveryRules(max_attempts=30, retry_delay=0.2, max_retry_delay=0.5)


class Mailbox:
    """A real SMTP server on a free port that keeps what it receives; can be taken down and brought back."""

    def __init__(self) -> None:
        self.port = harness.free_port()
        self.messages: list[Message] = []
        self._controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"

    def up(self) -> None:
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@dataclass
class Pipeline:
    mesh: harness.Commerce
    settings: Settings
    run_id: str
    backend: str
    provider: TestProvider
    sms: LoggingSmsProvider
    mailbox: Mailbox
    groups: dict[str, str] = field(default_factory=dict)
    schemas: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.mesh.base_url

    def target(self, domain: str) -> str:
        return self.mesh.target(domain)

    def payments_builder(self, provider=None):
        async def build(runtime):
            return await payments_service.build(
                runtime, provider=provider or self.provider, rules=FAST_PAYMENTS,
                schema=self.schemas["payments"],
                groups=(self.groups["payments.charge"], self.groups["payments.cancel"]))
        return build

    async def restart(self, name: str, builder=None):
        """Stop one domain's server (as a kill would: in-flight handlers cancelled, events redelivered)
        and start it again on the same port."""
        from services.kit.registry import DOMAINS as REGISTRY
        from services.kit.server import DomainServer

        await self.mesh.servers[name].stop()
        port = int(self.target(name).rsplit(":", 1)[1])
        spec = await (builder or self.builders()[name])(self.mesh.runtime)
        server = DomainServer(spec, host="127.0.0.1", port=port, grace=1.0, health_interval=0.2,
                              lifecycle=self.mesh.runtime.lifecycle)
        await server.start()
        self.mesh.servers[name] = server
        assert REGISTRY[name]
        return server

    def builders(self) -> dict:
        async def identity(runtime):
            store = open_identity_store(runtime.settings, schema=self.schemas["identity"])
            return await identity_service.build(runtime, store=store, rules=TEST_IDENTITY_RULES)

        async def orders(runtime):
            return await orders_service.build(runtime, payment_timeout=timedelta(seconds=60),
                                              sweep_interval=0.2, group=self.groups["orders.payments"])

        async def notifications(runtime):
            return await notifications_service.build(
                runtime, rules=FAST_DELIVERY, smtp=SmtpSettings(port=self.mailbox.port, timeout=3.0),
                sms=self.sms, schema=self.schemas["notifications"], group=self.groups["notifications"],
                poll=0.1)

        return {"identity": identity, "orders": orders, "payments": self.payments_builder(),
                "notifications": notifications}


async def start(backend: str, data_dir, run_id: str) -> Pipeline:
    """Start it; `run_id` must be the one harness.unique_names was given (audit and catalog groups)."""
    base = Settings.from_env()
    if backend == "real":
        settings = harness.real_settings(base, run_id)
    else:
        settings = dataclasses.replace(base, backends="embedded", data_dir=data_dir)
    mailbox = Mailbox()
    mailbox.up()
    pipeline = Pipeline(mesh=None, settings=settings, run_id=run_id, backend=backend, provider=TestProvider(),
                        sms=LoggingSmsProvider(), mailbox=mailbox,
                        groups={g: f"test-{g.replace('.', '-')}-{run_id}" for g in
                                ("payments.charge", "payments.cancel", "orders.payments", "notifications")},
                        schemas={s: f"test_{s}_{run_id}" for s in ("identity", "payments", "notifications")})
    pipeline.mesh = await harness.start(settings, domains=DOMAINS, builders=pipeline.builders())
    pipeline.mesh.run_id = run_id
    return pipeline


async def stop(pipeline: Pipeline) -> None:
    await harness.stop(pipeline.mesh)
    pipeline.mailbox.down()
    if pipeline.backend == "real":
        await harness.drop_real(pipeline.settings, pipeline.run_id, groups=tuple(pipeline.groups.values()),
                                schemas=tuple(pipeline.schemas.values()))


async def wait_for(check, what: str, timeout: float = 30.0, delay: float = 0.05):
    """Poll `check` (async) until it returns something truthy; fail naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(delay)
