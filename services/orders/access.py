"""Who may call: a signed-in user (sees only their own), or an internal caller.

An anonymous call is internal (a call whose session token does not resolve is UNAUTHENTICATED). In the embedded dev default that is all it takes (the seed's open
`/api/...` routes keep working); when AGORA_SERVICE_API_KEY is set (the prod overlay sets it), an
internal call must carry that key as `x-api-key` metadata (through the bridge:
`Grpc-Metadata-X-Api-Key`), or it is UNAUTHENTICATED.
"""

from __future__ import annotations

import hmac
import os

from services.kit.auth import Caller, bearer_token, caller
from services.kit.errors import Unauthenticated

API_KEY_ENV = "AGORA_SERVICE_API_KEY"


def _metadata(context, key: str) -> str:
    for k, v in (context.invocation_metadata() or ()) if context is not None else ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return ""


def resolve(context) -> Caller | None:
    """The signed-in caller, or None for an internal caller allowed in; UNAUTHENTICATED otherwise."""
    who = caller()
    if who is not None:
        return who
    if context is not None and bearer_token(context.invocation_metadata()):
        raise Unauthenticated("the session is unknown, expired or revoked: sign in again")
    expected = os.environ.get(API_KEY_ENV, "")
    if not expected:
        return None
    given = _metadata(context, "x-api-key")
    if given and hmac.compare_digest(given.encode(), expected.encode()):
        return None
    raise Unauthenticated("sign in (authorization: Bearer <session token>) or send the service API key as x-api-key")
