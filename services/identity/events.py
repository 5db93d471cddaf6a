"""Identity's event envelopes: a user registered; a session (or all of a user's) was revoked."""

from __future__ import annotations

from datetime import datetime

from agora.events.v1 import identity_pb2 as events_pb2

from services.identity.domain import NewUser
from services.kit import revocation
from services.kit.bus import new_envelope
from services.kit.wire import timestamp


def user_registered(user_id: str, new: NewUser, at: datetime):
    return new_envelope("identity.user.registered", "identity", user_id, events_pb2.UserRegistered(
        user_id=user_id, user_name=new.user_name, email=new.email, registered_at=timestamp(at)))


def session_revoked(user_id: str, session_digest: str, all_sessions: bool, at: datetime):
    """Every process ends the session's streams and forgets it from its cache on this event
    (services/kit/revocation.py); `session_digest` is '' when all the user's sessions go."""
    revoked = events_pb2.SessionRevoked(user_id=user_id, session_digest=session_digest,
                                        all_sessions=all_sessions, revoked_at=timestamp(at))
    return new_envelope(revocation.SESSION_REVOKED, "identity", user_id, revoked)
