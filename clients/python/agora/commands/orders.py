"""`agora orders place|show|list|watch`; `watch` follows an order's status live until it is final."""

from __future__ import annotations

import argparse
from typing import Any

from agora.commands.context import EXIT_OK, Invocation, UsageError
from agora.commands.formats import as_json, enum_name, money, when

STATUSES = ["pending", "paid", "payment-failed", "cancelled", "refunded"]


def register(sub: argparse._SubParsersAction, leaf) -> None:
    orders = sub.add_parser("orders", help="orders: place one, show it, watch it to its final status")
    verbs = orders.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = leaf(verbs, "place", "place an order for a client")
    p.add_argument("--client", required=True, dest="client_id", help="the client's id (customers)")
    p.add_argument("--item", required=True, action="append", dest="items", metavar="PRODUCT_ID[:QTY]",
                   help="a product and quantity (default 1); repeat for more lines")
    p.add_argument("--card", default="tok_ok", help="card token for the payment provider (default tok_ok)")
    p.set_defaults(run=place)

    p = leaf(verbs, "show", "an order, its lines and its status history")
    p.add_argument("order_id")
    p.set_defaults(run=show)

    p = leaf(verbs, "list", "orders (one client's with --client)")
    p.add_argument("--client", dest="client_id", default="")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(run=list_orders)

    p = leaf(verbs, "watch", "follow an order's status changes until a final status")
    p.add_argument("order_id")
    p.add_argument("--from", dest="resume_from", type=int, default=0, metavar="SEQUENCE",
                   help="only the changes after this sequence (default: the whole history)")
    p.add_argument("--until", action="append", choices=STATUSES, default=[], metavar="STATUS",
                   help="also stop at this status, e.g. paid (repeatable; the server itself ends the "
                        "stream at payment-failed, refunded, or cancelled without payment)")
    p.set_defaults(run=watch)


def _pb():
    from agora.orders.v1 import orders_pb2

    return orders_pb2


def _status(value: int) -> str:
    return enum_name(value, _pb().OrderStatus, "ORDER_STATUS_")


COLUMNS = ["id", "client", "status", "total", "lines", "created"]


def _row(o: Any) -> list[Any]:
    return [o.id, o.client_id, _status(o.status), money(o.total), len(o.items), when(o.created_at)]


def _item(text: str) -> Any:
    product, _, quantity = text.partition(":")
    if not product or (quantity and not quantity.isdigit()):
        raise UsageError(f"--item {text!r}: expected PRODUCT_ID or PRODUCT_ID:QUANTITY")
    return _pb().OrderItemInput(product_id=product, quantity=int(quantity or 1))


def place(inv: Invocation) -> int:
    ns = inv.ns
    reply = inv.client.orders.CreateOrder(_pb().CreateOrderRequest(
        client_id=ns.client_id, items=[_item(i) for i in ns.items], card_token=ns.card))
    if inv.json:
        inv.emit(as_json(reply))
    else:
        inv.table("order placed", COLUMNS, [_row(reply.order)])
    return EXIT_OK


def show(inv: Invocation) -> int:
    order = inv.client.orders.GetOrder(_pb().GetOrderRequest(order_id=inv.ns.order_id)).order
    if inv.json:
        inv.emit({"order": as_json(order)})
        return EXIT_OK
    inv.table(None, COLUMNS, [_row(order)])
    inv.table("lines", ["product", "name", "qty", "unit price", "total"],
              [[i.product_id, i.product_name, i.quantity, money(i.unit_price),
                money(i.line_total)] for i in order.items])
    inv.table("history", ["#", "status", "at", "reason"],
              [[c.sequence, _status(c.status), when(c.at), c.reason] for c in order.history])
    return EXIT_OK


def list_orders(inv: Invocation) -> int:
    pb, ns = _pb(), inv.ns
    if ns.client_id:
        orders = inv.client.orders.ListOrdersByClient(
            pb.ListOrdersByClientRequest(client_id=ns.client_id, page_size=min(ns.limit, 500))).orders
    else:
        orders = inv.client.orders.ListOrders(pb.ListOrdersRequest(page_size=min(ns.limit, 500))).orders
    if inv.json:
        inv.emit({"orders": [as_json(o) for o in orders]})
    else:
        inv.table(f"{len(orders)} order(s)", COLUMNS, [_row(o) for o in orders])
    return EXIT_OK


def watch(inv: Invocation) -> int:
    ns = inv.ns
    changes = inv.client.watch_order(ns.order_id, resume_from=ns.resume_from,
                                     on_retry=lambda e, n, d: inv.note(
        f"[yellow]connection lost ({e.code.name}); resuming[/yellow]"))
    for update in changes:
        if inv.json:
            inv.emit_line(as_json(update))
        else:
            c = update.change
            inv.console.print(f"#{c.sequence} {when(c.at)}  [bold]{_status(c.status)}[/bold]  {c.reason}")
        if _status(update.change.status) in ns.until:
            break
    return EXIT_OK
