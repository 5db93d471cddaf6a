"""The CustomerServicer (agora.customers.v1.CustomerService): proto in, proto out; rules in domain.py,
storage behind store.py."""

from __future__ import annotations

from agora.customers.v1 import customers_pb2 as pb
from agora.customers.v1 import customers_pb2_grpc

from services.customers import domain
from services.customers.domain import EmailTaken, Kind, Party
from services.customers.events import created_event
from services.customers.store import CustomerStore, open_store
from services.customers.wire import from_proto, to_proto
from services.kit import paging
from services.kit.auth import caller, owner_or_internal
from services.kit.bus.outbox import outbox_relay
from services.kit.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from services.kit.health import bus_probe
from services.kit.registry import DOMAINS
from services.kit.server import ServiceSpec


class CustomerServicer(customers_pb2_grpc.CustomerServiceServicer):
    def __init__(self, store: CustomerStore, on_commit=lambda: None) -> None:
        self.store = store
        self.on_commit = on_commit  # wakes the outbox relay

    async def _create(self, kind: Kind, message, owner: str | None = None) -> Party:
        """`owner` None: the signed-in caller's (nobody's without a session); '' : nobody's."""
        if owner is None:
            who = caller()
            owner = who.user_id if who else ""
        party = domain.new_party(kind, from_proto(kind, message), user_id=owner)
        try:
            await self.store.create(party, created_event(party))
        except EmailTaken:
            raise AlreadyExists(f"another {kind.value} already has the email {party.email!r}") from None
        self.on_commit()
        return party

    async def _get(self, kind: Kind, party_id: str) -> Party:
        if not party_id.strip():
            raise InvalidArgument.field(f"{kind.value}_id", "required")
        party = await self.store.get(kind, party_id.strip())
        if party is None:
            raise NotFound.of(kind.value, party_id)
        return party

    async def _update(self, kind: Kind, party_id: str, message, mask, context) -> Party:
        who = owner_or_internal(context)
        current = await self._get(kind, party_id)
        _check_owner(current, who)
        updated = domain.apply_update(current, from_proto(kind, message), list(mask.paths))
        try:
            return await self.store.update(updated)
        except EmailTaken:
            raise AlreadyExists(f"another {kind.value} already has the email {updated.email!r}") from None

    async def _list(self, kind: Kind, request, owner: str | None = None,
                    scope: str = "") -> tuple[list[Party], str]:
        size = paging.page_size(request.page_size)
        query = request.query.strip()
        # a token is good only for the list it came from: the same kind, filter, owner and route
        issued_for = f"{kind.value}{scope}:{owner if owner is not None else '*'}"
        after = paging.decode_token(request.page_token, issued_for, query, kind=int) or 0
        rows = await self.store.list(kind, query, after, size + 1, owner=owner)
        token = paging.encode_token(rows[size - 1][0], issued_for, query) if len(rows) > size else ""
        return [p for _, p in rows[:size]], token


    async def CreateClient(self, request, context):
        return pb.CreateClientResponse(client=to_proto(await self._create(Kind.CLIENT, request.client)))

    async def GetClient(self, request, context):
        party = await self._get(Kind.CLIENT, request.client_id)
        _check_owner(party, owner_or_internal(context))
        return pb.GetClientResponse(client=to_proto(party))

    async def UpdateClient(self, request, context):
        party = await self._update(Kind.CLIENT, request.client_id, request.client, request.update_mask,
                                   context)
        return pb.UpdateClientResponse(client=to_proto(party))

    async def ListClients(self, request, context):
        who = owner_or_internal(context)  # a user lists their own; internal callers every client
        parties, token = await self._list(Kind.CLIENT, request, owner=who.user_id if who else None)
        return pb.ListClientsResponse(clients=[to_proto(p) for p in parties], next_page_token=token)

    # -- the seed shop's open routes: its clients belong to nobody, and no one else's show there

    async def SeedCreateClient(self, request, context):
        party = await self._create(Kind.CLIENT, request.client, owner="")
        return pb.SeedCreateClientResponse(client=to_proto(party))

    async def SeedGetClient(self, request, context):
        party = await self._get(Kind.CLIENT, request.client_id)
        if party.user_id:
            raise NotFound.of(Kind.CLIENT.value, request.client_id)  # a user's client: not the seed shop's
        return pb.SeedGetClientResponse(client=to_proto(party))

    async def SeedListClients(self, request, context):
        parties, token = await self._list(Kind.CLIENT, request, owner="", scope="seed")
        return pb.SeedListClientsResponse(clients=[to_proto(p) for p in parties], next_page_token=token)

    async def CreateSeller(self, request, context):
        return pb.CreateSellerResponse(seller=to_proto(await self._create(Kind.SELLER, request.seller)))

    async def GetSeller(self, request, context):
        return pb.GetSellerResponse(seller=to_proto(await self._get(Kind.SELLER, request.seller_id)))

    async def UpdateSeller(self, request, context):
        party = await self._update(Kind.SELLER, request.seller_id, request.seller, request.update_mask,
                                   context)
        return pb.UpdateSellerResponse(seller=to_proto(party))

    async def ListSellers(self, request, context):
        parties, token = await self._list(Kind.SELLER, request)
        return pb.ListSellersResponse(sellers=[to_proto(p) for p in parties], next_page_token=token)


def _check_owner(party: Party, who) -> None:
    """A record belongs to the user who registered it; one registered without a session belongs to
    nobody, and of the `/v1` callers only internal ones (`who` None) read or change it."""
    if who is not None and party.user_id != who.user_id:
        raise PermissionDenied(f"this {party.kind.value} belongs to another user")


async def build(runtime) -> ServiceSpec:
    store = open_store(runtime.settings)
    bus = await runtime.bus()
    relay = outbox_relay(bus, store)
    servicer = CustomerServicer(store, on_commit=relay.wake)
    return ServiceSpec(
        domain=DOMAINS["customers"],
        register=lambda server: customers_pb2_grpc.add_CustomerServiceServicer_to_server(servicer, server),
        probes={"store": store.ping, "bus": bus_probe(bus)},
        stores=[store],
        relay=relay,
        bus=bus,
        sessions=runtime.sessions(),
    )
