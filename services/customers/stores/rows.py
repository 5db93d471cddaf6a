"""Row <-> Party conversion shared by the SQL adapters (same columns in both).

The shared room of customers' two SQL adapters, kept under this name rather than sql.py: they share
the tables, columns and row mapping, while each keeps its statements (the column types, PostgreSQL's
`id::text` cast, SQLite's LIKE ESCAPE and ISO-text times differ)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from services.customers.domain import Address, Kind, Party

TABLES = {Kind.CLIENT: "clients", Kind.SELLER: "sellers"}
COLUMNS = "seq, id, name, email, phone, address, description, user_id, created_at, updated_at"


def like_pattern(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _time(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(value)


def to_party(kind: Kind, row) -> tuple[int, Party]:
    seq, pid, name, email, phone, address, description, user_id, created, updated = row
    if isinstance(address, str):
        address = json.loads(address)
    return int(seq), Party(
        kind=kind, id=str(pid), name=name, email=email, phone=phone, address=Address(**(address or {})),
        description=description, user_id=user_id, created_at=_time(created), updated_at=_time(updated),
    )


def values(p: Party) -> tuple:
    return (p.id, p.name, p.email, p.email_key, p.phone, json.dumps(p.address.as_dict()), p.description,
            p.user_id)
