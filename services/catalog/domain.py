"""Products, prices and stock reservations as values, and their rules (no I/O)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from services.kit.errors import InvalidArgument
from services.kit.values import Money

_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Product:
    id: str
    seller_id: str
    name: str
    price: Money
    stock: int = 0
    description: str = ""
    category: str = ""
    attributes: dict = field(default_factory=dict)
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None


class ReservationState(str, Enum):
    RESERVED = "reserved"
    RELEASED = "released"


@dataclass(frozen=True)
class Reservation:
    order_id: str
    items: tuple[tuple[str, int], ...]  # (product_id, quantity), summed per product, sorted
    state: ReservationState
    reserved_at: datetime | None = None
    released_at: datetime | None = None
    release_reason: str = ""


@dataclass(frozen=True)
class StockChange:
    """One product's stock before and after a reservation, release or adjustment."""

    before: Product
    after: Product


# What a store reports when a rule decided inside its transaction says no.
class ProductMissing(Exception):
    def __init__(self, product_id: str) -> None:
        super().__init__(product_id)
        self.product_id = product_id


class StockShort(Exception):
    def __init__(self, shortages: dict[str, tuple[int, int]]) -> None:  # product_id -> (wanted, available)
        super().__init__(shortages)
        self.shortages = shortages


class ReservationReleased(Exception):
    """The order's reservation was released already; it cannot reserve again."""


class ReservationConflict(Exception):
    """The order already holds a reservation with different items."""


class VersionMismatch(Exception):
    """The product changed since it was read."""


def now() -> datetime:
    """The current time to the millisecond (what MongoDB keeps), so every store answers alike."""
    at = datetime.now(timezone.utc)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _check_price(price: Money | None, name: str, problems: dict[str, str]) -> None:
    if price is None:
        problems[name] = "required"
        return
    if not _CURRENCY.match(price.currency_code):
        problems[f"{name}.currency_code"] = "an ISO 4217 code, upper case, e.g. USD"
    if price.amount_minor < 0:
        problems[f"{name}.amount_minor"] = "must not be negative"


def _check_fields(p: Product, problems: dict[str, str]) -> Product:
    name = p.name.strip()
    if not name:
        problems["product.name"] = "required"
    elif len(name) > 200:
        problems["product.name"] = "at most 200 characters"
    if len(p.description) > 5000:
        problems["product.description"] = "at most 5000 characters"
    if len(p.category) > 200:
        problems["product.category"] = "at most 200 characters"
    if p.stock < 0:
        problems["product.stock"] = "must not be negative"
    _check_price(p.price, "product.price", problems)
    return dataclasses.replace(p, name=name, category=p.category.strip())


def new_product(given: Product, *, at: datetime | None = None) -> Product:
    problems: dict[str, str] = {}
    if not given.seller_id.strip():
        problems["product.seller_id"] = "required"
    checked = _check_fields(given, problems)
    if problems:
        raise InvalidArgument.fields(problems)
    at = at or now()
    return dataclasses.replace(checked, id=str(uuid.uuid4()), seller_id=given.seller_id.strip(), version=1,
                               created_at=at, updated_at=at)


MUTABLE = ("name", "description", "category", "price", "stock", "attributes")


def apply_update(current: Product, given: Product, paths: list[str], *, at: datetime | None = None
                 ) -> tuple[Product, list[str]]:
    """`current` with the masked fields taken from `given`; also the names of the fields that changed."""
    if not paths:
        paths = [f for f in MUTABLE if f not in ("price", "attributes") and getattr(given, f)]
        if given.price is not None:
            paths.append("price")
        if given.attributes:
            paths.append("attributes")
    changes: dict = {}
    attributes = dict(current.attributes)
    for path in paths:
        top, _, sub = path.partition(".")
        if top not in MUTABLE or (sub and top != "attributes"):
            raise InvalidArgument.field(
                "update_mask",
                f"{path!r} cannot be updated; mutable paths: {', '.join(MUTABLE)}, attributes.<key>",
            )
        if top == "attributes":
            if sub:
                if sub in given.attributes:
                    attributes[sub] = given.attributes[sub]
                else:
                    attributes.pop(sub, None)
            else:
                attributes = dict(given.attributes)
            changes["attributes"] = attributes
        else:
            changes[top] = getattr(given, top)
    updated = dataclasses.replace(current, **changes)
    problems: dict[str, str] = {}
    updated = _check_fields(updated, problems)
    currency = current.price.currency_code
    if "price" in changes and updated.price is not None and updated.price.currency_code != currency:
        problems["product.price.currency_code"] = f"the currency cannot change (it is {currency})"
    if problems:
        raise InvalidArgument.fields(problems)
    changed = [f for f in MUTABLE if getattr(updated, f) != getattr(current, f)]
    if not changed:
        return current, []
    return dataclasses.replace(updated, version=current.version + 1, updated_at=at or now()), changed


def reservation_items(items: list[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Validated items with quantities summed per product, in product id order (the stored form)."""
    if not items:
        raise InvalidArgument.field("items", "at least one item is required")
    problems: dict[str, str] = {}
    totals: dict[str, int] = {}
    for i, (product_id, quantity) in enumerate(items):
        if not product_id.strip():
            problems[f"items[{i}].product_id"] = "required"
        if quantity <= 0:
            problems[f"items[{i}].quantity"] = f"must be positive, not {quantity}"
        totals[product_id.strip()] = totals.get(product_id.strip(), 0) + quantity
    if problems:
        raise InvalidArgument.fields(problems)
    return tuple(sorted(totals.items()))


def check_adjustment(delta: int) -> None:
    if delta == 0:
        raise InvalidArgument.field("delta", "must not be zero")


def with_stock(p: Product, delta: int, at: datetime) -> Product:
    return dataclasses.replace(p, stock=p.stock + delta, version=p.version + 1, updated_at=at)






def search_words(query: str) -> list[str]:
    return [w for w in re.split(r"\W+", query.lower()) if w]
