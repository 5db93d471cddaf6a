"""Identity on the wire: the domain's User as the API's message (Timestamps from the kit)."""

from __future__ import annotations

from agora.identity.v1 import identity_pb2 as pb

from services.identity.domain import User
from services.kit.wire import timestamp


def user(u: User, *, with_email: bool) -> pb.User:
    """The user; their e-mail address only for themselves (`with_email`)."""
    return pb.User(id=u.id, user_name=u.user_name, email=u.email if with_email else "", bio=u.bio,
                   created_at=timestamp(u.created_at))
