"""A typed program against the Agora client: sign up, open a shop, order, follow the order live.

    python examples/shop.py [--target HOST] [--seed-only --token SESSION]

It signs up a new shopper, whose client record the order is for (a client belongs to the user who
registered it). `--seed-only` registers the client under the session `--token` names instead,
prints the ids of that client and a product as JSON and exits (the CLI tests use it to set up
`agora orders place`). mypy checks this file in the test suite (tests/clients).
"""

from __future__ import annotations

import argparse
import json
import uuid

from agora.catalog.v1 import catalog_pb2
from agora.client import Agora, AgoraError
from agora.common.v1.money_pb2 import Money
from agora.customers.v1 import customers_pb2
from agora.identity.v1 import identity_pb2
from agora.orders.v1 import orders_pb2


def open_shop(agora: Agora) -> tuple[str, str]:
    """A seller with one product in stock and a client of the signed-in user: (client_id, product_id)."""
    suffix = uuid.uuid4().hex[:8]
    seller = agora.customers.CreateSeller(customers_pb2.CreateSellerRequest(
        seller=customers_pb2.Seller(name=f"Shop {suffix}", email=f"shop-{suffix}@example.com"))).seller
    product: catalog_pb2.Product = agora.catalog.CreateProduct(catalog_pb2.CreateProductRequest(
        product=catalog_pb2.Product(seller_id=seller.id, name=f"Mug {suffix}", category="kitchen",
                                    price=Money(currency_code="USD", amount_minor=1250), stock=100))).product
    client = agora.customers.CreateClient(customers_pb2.CreateClientRequest(
        client=customers_pb2.Client(name=f"Client {suffix}", email=f"client-{suffix}@example.com"))).client
    return client.id, product.id


def sign_in(agora: Agora) -> str:
    name = f"shopper_{uuid.uuid4().hex[:8]}"
    password = "correct horse battery"
    agora.identity.SignUp(identity_pb2.SignUpRequest(user_name=name, email=f"{name}@example.com",
                                                     password=password))
    login = agora.identity.Login(identity_pb2.LoginRequest(user_name=name, password=password))
    agora.token = login.session_token
    return login.user.user_name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", help="host of the mesh (default: AGORA_TARGET or 127.0.0.1)")
    parser.add_argument("--seed-only", action="store_true")
    parser.add_argument("--token", help="with --seed-only: the session the client is registered under")
    args = parser.parse_args()
    if args.seed_only and not args.token:
        parser.error("--seed-only needs --token: a client belongs to the user who registers it")
    with Agora(args.target, token=args.token) as agora:
        if args.seed_only:
            client_id, product_id = open_shop(agora)
            print(json.dumps({"client_id": client_id, "product_id": product_id}))
            return 0
        print("signed in as", sign_in(agora))
        client_id, product_id = open_shop(agora)
        try:
            order = agora.orders.CreateOrder(orders_pb2.CreateOrderRequest(
                client_id=client_id, items=[orders_pb2.OrderItemInput(product_id=product_id, quantity=2)],
                card_token="tok_ok")).order
        except AgoraError as error:
            print("order refused:", error.code.name, error.field_violations or error.message)
            return 1
        total: int = order.total.amount_minor
        print(f"order {order.id}: {total / 100:.2f} {order.total.currency_code}")
        for update in agora.watch_order(order.id):
            status = orders_pb2.OrderStatus.Name(update.change.status)
            print(f"  #{update.sequence} {status} ({update.change.reason})")
            if update.change.status == orders_pb2.ORDER_STATUS_PAID:
                break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
