"""The PaymentService servicer: proto in, proto out; charging in charging.py, storage behind store.py."""

from __future__ import annotations

from agora.payments.v1 import payments_pb2 as pb
from agora.payments.v1 import payments_pb2_grpc

from services.kit import paging
from services.kit.auth import owner_or_internal
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import InvalidArgument, NotFound, PermissionDenied, enum_value
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec
from services.payments import wire
from services.payments.charging import Cashier
from services.payments.consumers import CancelConsumer, ChargeConsumer
from services.payments.domain import Payment, PaymentFilter, PaymentRules, Status
from services.payments.provider import PaymentProvider, open_provider
from services.payments.store import PaymentStore, open_store


class PaymentServicer(payments_pb2_grpc.PaymentServiceServicer):
    def __init__(self, store: PaymentStore, cashier: Cashier) -> None:
        self.store = store
        self.cashier = cashier

    @staticmethod
    def _check_access(payment: Payment, context) -> None:
        who = owner_or_internal(context)
        if who is not None and payment.user_id != who.user_id:
            raise PermissionDenied("this payment belongs to another user")

    async def _payment(self, payment_id: str, context) -> Payment:
        if not payment_id.strip():
            raise InvalidArgument.field("payment_id", "required")
        payment = await self.store.get(payment_id.strip())
        if payment is None:
            raise NotFound.of("payment", payment_id)
        self._check_access(payment, context)
        return payment

    async def GetPayment(self, request, context):
        return pb.GetPaymentResponse(payment=wire.payment(await self._payment(request.payment_id, context)))

    async def GetPaymentByOrder(self, request, context):
        if not request.order_id.strip():
            raise InvalidArgument.field("order_id", "required")
        payment = await self.store.get_by_order(request.order_id.strip())
        if payment is None:
            raise NotFound(f"no payment for order {request.order_id!r} (yet): the order may not exist, "
                           "or its payment is not started; retry shortly", "payment",
                           f"order/{request.order_id}")
        self._check_access(payment, context)
        return pb.GetPaymentByOrderResponse(payment=wire.payment(payment))

    async def ListPayments(self, request, context):
        who = owner_or_internal(context)
        size = paging.page_size(request.page_size)
        if request.status and request.status not in Status._value2member_map_:
            raise InvalidArgument.field("status", f"unknown status {request.status}")
        status = enum_value(Status, request.status, "status") if request.status else None
        filter = PaymentFilter(order_id=request.order_id.strip(), client_id=request.client_id.strip(),
                               status=status, user_id=who.user_id if who else "")
        cursor = paging.decode_token(request.page_token, *filter.parts(), kind=str) or ""
        payments, after = await self.store.list(filter, cursor, size)
        token = paging.encode_token(after, *filter.parts()) if after else ""
        return pb.ListPaymentsResponse(payments=[wire.payment(p) for p in payments], next_page_token=token)

    async def RefundPayment(self, request, context):
        payment = await self._payment(request.payment_id, context)
        refunded = await self.cashier.refund(payment, request.reason.strip() or "refund requested")
        return pb.RefundPaymentResponse(payment=wire.payment(refunded))


async def build(runtime, *, store: PaymentStore | None = None, provider: PaymentProvider | None = None,
                rules: PaymentRules | None = None, schema: str | None = None,
                groups: tuple[str, str] | None = None) -> ServiceSpec:
    store = store or open_store(runtime.settings, schema=schema or runtime.settings.payments_schema)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store, idle_wait=0.2)
    rules = rules or PaymentRules.from_settings(runtime.settings)
    cashier = Cashier(store, provider or open_provider(), rules, wake=relay.wake)
    servicer = PaymentServicer(store, cashier)
    return ServiceSpec(
        domain=DOMAINS["payments"],
        register=lambda server: payments_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store], relay=relay,
        consumers=[ChargeConsumer(cashier, *(groups[:1] if groups else ())),
                   CancelConsumer(cashier, *(groups[1:] if groups else ()))],
        bus=bus, sessions=runtime.sessions(),
    )
