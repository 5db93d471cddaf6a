"""The ten domains of the mesh: name, gRPC service, default port. The one list everything reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Domain:
    name: str
    service: str  # fully qualified gRPC service name
    port: int  # default gRPC port (the same locally and in the cluster)

    @property
    def module(self) -> str:
        return f"services.{self.name}"


DOMAINS: dict[str, Domain] = {
    d.name: d
    for d in (
        Domain("identity", "agora.identity.v1.IdentityService", 50051),
        Domain("polls", "agora.polls.v1.PollService", 50052),
        Domain("auctions", "agora.auctions.v1.AuctionService", 50053),
        Domain("chat", "agora.chat.v1.ChatService", 50054),
        Domain("customers", "agora.customers.v1.CustomerService", 50055),
        Domain("catalog", "agora.catalog.v1.CatalogService", 50056),
        Domain("orders", "agora.orders.v1.OrderService", 50057),
        Domain("payments", "agora.payments.v1.PaymentService", 50058),
        Domain("notifications", "agora.notifications.v1.NotificationService", 50059),
        Domain("audit", "agora.audit.v1.AuditService", 50060),
    )
}

GATEWAY_PORT = 8080
