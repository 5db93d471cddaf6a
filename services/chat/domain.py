"""Chat's pure rules: room, message and member values, their limits and page sizes. No I/O."""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass
from enum import IntEnum

from services.kit import paging
from services.kit.errors import InvalidArgument

DEFAULT_ROOM = "general"
TEXT_MAX_CHARS = 4096
TEXT_MAX_BYTES = 16 * 1024
ATTACHMENT_MAX_BYTES = 256 * 1024
FILENAME_MAX_CHARS = 255
ALLOWED_CONTENT_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}
)
USERNAME_MAX_CHARS = 32
CLIENT_MESSAGE_ID_MAX_CHARS = 128
TITLE_MAX_CHARS = 100
DESCRIPTION_MAX_CHARS = 1000
PAGE_DEFAULT = 50
PAGE_MAX = 500

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Kind(IntEnum):
    """Values match agora.chat.v1.MessageKind."""

    MESSAGE = 1
    JOIN = 2
    LEAVE = 3


@dataclass(frozen=True)
class Author:
    """Who speaks or is present: a signed-in user (user_id set) or an anonymous name."""

    user_id: str
    username: str

    @property
    def key(self) -> str:
        """One member per account, or per anonymous name: several tabs are one member."""
        return f"u:{self.user_id}" if self.user_id else f"a:{self.username}"


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class AttachmentInfo:
    id: str
    filename: str
    content_type: str
    size_bytes: int


@dataclass(frozen=True)
class Draft:
    """A validated message about to be stored (it has no sequence yet)."""

    room_id: str
    author: Author
    text: str
    upload: Upload | None
    client_message_id: str


@dataclass(frozen=True)
class Entry:
    """One room entry as stored: a message, a join or a leave, at its sequence."""

    id: str
    room_id: str
    sequence: int
    kind: Kind
    user_id: str
    username: str
    text: str
    attachment: AttachmentInfo | None
    sent_at: float
    client_message_id: str = ""
    timed_out: bool = False  # LEAVE only: the connection was dropped, not closed


@dataclass(frozen=True)
class Room:
    id: str
    title: str
    description: str
    created_by: str
    created_at: float
    last_sequence: int
    last_activity_at: float | None
    member_count: int


@dataclass(frozen=True)
class Member:
    user_id: str
    username: str
    joined_at: float
    connections: int


def new_id() -> str:
    return str(uuid.uuid4())


def room_id_or_default(room_id: str) -> str:
    return room_id or DEFAULT_ROOM


def check_room_id(room_id: str, field: str = "room_id") -> str:
    if not _SLUG.match(room_id):
        raise InvalidArgument.field(
            field, "must be a slug: a-z, 0-9, '_' or '-', starting with a letter or digit, at most 64")
    return room_id


def slug_from_title(title: str) -> str:
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:56].strip("-")
    return slug or f"room-{uuid.uuid4().hex[:8]}"


def check_new_room(room_id: str, title: str, description: str) -> tuple[str, str, str]:
    """(room_id, title, description) for CreateRoom, or INVALID_ARGUMENT naming every bad field."""
    problems: dict[str, str] = {}
    title = title.strip()
    if not title:
        problems["title"] = "must not be empty"
    elif len(title) > TITLE_MAX_CHARS:
        problems["title"] = f"at most {TITLE_MAX_CHARS} characters (got {len(title)})"
    if len(description) > DESCRIPTION_MAX_CHARS:
        problems["description"] = f"at most {DESCRIPTION_MAX_CHARS} characters (got {len(description)})"
    if room_id and not _SLUG.match(room_id):
        problems["room_id"] = ("must be a slug: a-z, 0-9, '_' or '-', starting with a letter or digit,"
                               " at most 64")
    if problems:
        raise InvalidArgument.fields(problems)
    return room_id or slug_from_title(title), title, description


def check_username(username: str, field: str = "username") -> str:
    name = username.strip()
    if not name:
        raise InvalidArgument.field(field, "required when not signed in: choose a display name")
    if len(name) > USERNAME_MAX_CHARS:
        raise InvalidArgument.field(field, f"at most {USERNAME_MAX_CHARS} characters (got {len(name)})")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InvalidArgument.field(field, "must not contain control characters")
    return name


def author_for(signed_in: tuple[str, str] | None, username: str) -> Author:
    """The signed-in user speaks under their account name; anyone else under the name they give."""
    if signed_in is not None:
        return Author(signed_in[0], signed_in[1])
    return Author("", check_username(username))


def has_content(text: str, upload: Upload | None) -> bool:
    return bool(text.strip()) or upload is not None


def check_draft(room_id: str, author: Author, text: str, upload: Upload | None,
                client_message_id: str) -> Draft:
    """A message ready to store, or INVALID_ARGUMENT naming the field at fault."""
    if not has_content(text, upload):
        raise InvalidArgument.field("text", "empty message: send some text or an attachment")
    if len(text) > TEXT_MAX_CHARS:
        raise InvalidArgument.field("text", f"text exceeds {TEXT_MAX_CHARS} characters (got {len(text)})")
    if len(text.encode("utf-8")) > TEXT_MAX_BYTES:
        raise InvalidArgument.field("text", f"text exceeds {TEXT_MAX_BYTES} bytes of UTF-8")
    if len(client_message_id) > CLIENT_MESSAGE_ID_MAX_CHARS:
        raise InvalidArgument.field("client_message_id", f"at most {CLIENT_MESSAGE_ID_MAX_CHARS} characters")
    if upload is not None:
        check_upload(upload)
    return Draft(room_id, author, text, upload, client_message_id)


def check_upload(upload: Upload) -> None:
    if not upload.filename.strip():
        raise InvalidArgument.field("attachment.filename", "a file name is required")
    if len(upload.filename) > FILENAME_MAX_CHARS:
        raise InvalidArgument.field("attachment.filename", f"at most {FILENAME_MAX_CHARS} characters")
    if upload.content_type not in ALLOWED_CONTENT_TYPES:
        allowed = ", ".join(sorted(ALLOWED_CONTENT_TYPES))
        raise InvalidArgument.field(
            "attachment.content_type",
            f"{upload.content_type or '(none)'!r} is not allowed; use one of {allowed}",
        )
    if not upload.data:
        raise InvalidArgument.field("attachment.data", "the file is empty")
    if len(upload.data) > ATTACHMENT_MAX_BYTES:
        raise InvalidArgument.field(
            "attachment.data", f"file exceeds {ATTACHMENT_MAX_BYTES} bytes (got {len(upload.data)})"
        )


def page_size(requested: int, field: str) -> int:
    """History's `limit` (the seed's name) follows the kit's paging rule too."""
    return paging.page_size(requested, default=PAGE_DEFAULT, maximum=PAGE_MAX, field=field)

