"""Clients and sellers as values, and the rules for creating and changing them (no I/O)."""

from __future__ import annotations

import dataclasses
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum

from services.kit.errors import InvalidArgument

ADDRESS_FIELDS = ("line1", "line2", "city", "region", "postal_code", "country_code")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class Kind(str, Enum):
    """Clients and sellers share a shape; the kind says which table and which event."""

    CLIENT = "client"
    SELLER = "seller"


@dataclass(frozen=True)
class Address:
    line1: str = ""
    line2: str = ""
    city: str = ""
    region: str = ""
    postal_code: str = ""
    country_code: str = ""

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Party:
    """A client or a seller (`description` is used by sellers only)."""

    kind: Kind
    id: str
    name: str
    email: str
    phone: str = ""
    address: Address = field(default_factory=Address)
    description: str = ""
    user_id: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def email_key(self) -> str:
        """What uniqueness is decided on: the address, case-insensitively."""
        return self.email.lower()


class EmailTaken(Exception):
    """The store's answer when another party of the same kind already has the email."""


def _validate(kind: Kind, p: Party) -> Party:
    prefix = kind.value
    problems: dict[str, str] = {}
    name = p.name.strip()
    email = p.email.strip()
    phone = p.phone.strip()
    if not name:
        problems[f"{prefix}.name"] = "required"
    elif len(name) > 200:
        problems[f"{prefix}.name"] = "at most 200 characters"
    if not email:
        problems[f"{prefix}.email"] = "required"
    elif len(email) > 254 or not _EMAIL.match(email):
        problems[f"{prefix}.email"] = f"{email!r} is not a valid email address"
    if phone and not _E164.match(phone):
        problems[f"{prefix}.phone"] = f"{phone!r} is not an E.164 number such as +5511987654321"
    address = Address(**{k: getattr(p.address, k).strip() for k in ADDRESS_FIELDS})
    if address.country_code and not _COUNTRY.match(address.country_code):
        problems[f"{prefix}.address.country_code"] = "ISO 3166-1 alpha-2, upper case, e.g. BR or US"
    for k in ADDRESS_FIELDS:
        if len(getattr(address, k)) > 200:
            problems[f"{prefix}.address.{k}"] = "at most 200 characters"
    if len(p.description) > 2000:
        problems[f"{prefix}.description"] = "at most 2000 characters"
    if problems:
        raise InvalidArgument.fields(problems)
    return dataclasses.replace(p, name=name, email=email, phone=phone, address=address)


def new_party(kind: Kind, given: Party, *, user_id: str, now: datetime | None = None) -> Party:
    """A party ready to store: validated, trimmed, with a fresh id and timestamps."""
    now = now or datetime.now(timezone.utc)
    checked = _validate(kind, given)
    return dataclasses.replace(
        checked, kind=kind, id=str(uuid.uuid4()), user_id=user_id, created_at=now, updated_at=now,
        description=checked.description if kind is Kind.SELLER else "",
    )


MUTABLE = {
    Kind.CLIENT: ("name", "email", "phone", "address"),
    Kind.SELLER: ("name", "email", "phone", "address", "description"),
}


def apply_update(current: Party, given: Party, paths: list[str], *, now: datetime | None = None) -> Party:
    """`current` with the fields named by `paths` taken from `given` (empty: every non-default field)."""
    kind = current.kind
    mutable = MUTABLE[kind]
    if not paths:
        paths = [f for f in mutable if f != "address" and getattr(given, f)]
        paths += [f"address.{k}" for k in ADDRESS_FIELDS if getattr(given.address, k)]
    changes: dict = {}
    address = current.address.as_dict()
    for path in paths:
        top, _, sub = path.partition(".")
        if top not in mutable or (sub and (top != "address" or sub not in ADDRESS_FIELDS)):
            raise InvalidArgument.field(
                "update_mask",
                f"{path!r} cannot be updated; mutable paths: {', '.join(mutable)}, address.<field>",
            )
        if top == "address":
            if sub:
                address[sub] = getattr(given.address, sub)
            else:
                address = given.address.as_dict()
        else:
            changes[top] = getattr(given, top)
    updated = dataclasses.replace(current, address=Address(**address), **changes)
    updated = _validate(kind, updated)
    return dataclasses.replace(updated, updated_at=now or datetime.now(timezone.utc))



