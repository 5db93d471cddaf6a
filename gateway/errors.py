"""gRPC status -> HTTP status and the {"code","message","details"} body, as grpc-gateway maps them."""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2

# grpc-gateway runtime/errors.go HTTPStatusFromCode, code by code.
HTTP_STATUS: dict[int, int] = {
    code_pb2.OK: 200,
    code_pb2.CANCELLED: 499,
    code_pb2.UNKNOWN: 500,
    code_pb2.INVALID_ARGUMENT: 400,
    code_pb2.DEADLINE_EXCEEDED: 504,
    code_pb2.NOT_FOUND: 404,
    code_pb2.ALREADY_EXISTS: 409,
    code_pb2.PERMISSION_DENIED: 403,
    code_pb2.RESOURCE_EXHAUSTED: 429,
    code_pb2.FAILED_PRECONDITION: 400,
    code_pb2.ABORTED: 409,
    code_pb2.OUT_OF_RANGE: 400,
    code_pb2.UNIMPLEMENTED: 501,
    code_pb2.INTERNAL: 500,
    code_pb2.UNAVAILABLE: 503,
    code_pb2.DATA_LOSS: 500,
    code_pb2.UNAUTHENTICATED: 401,
}

STATUS_DETAILS_KEY = "grpc-status-details-bin"
WEBSOCKET_CLOSE_BASE = 4000


def http_status(code: int) -> int:
    return HTTP_STATUS.get(code, 500)


class BridgeError(Exception):
    """An error the bridge itself raises (bad input, no route, too large); rendered like an upstream one."""

    def __init__(self, code: int, message: str, *, http: int | None = None,
                 headers: dict[str, str] | None = None,
                 details: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.http = http if http is not None else http_status(code)
        self.headers = headers or {}
        self.details = details or []

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": list(self.details)}


def bad_request(message: str, violations: list[tuple[str, str]] | None = None) -> BridgeError:
    """INVALID_ARGUMENT; `violations` ((field, problem) pairs) become one google.rpc.BadRequest detail."""
    details = [bad_request_detail(violations)] if violations else None
    return BridgeError(code_pb2.INVALID_ARGUMENT, message, details=details)


def bad_request_detail(violations: list[tuple[str, str]]) -> dict[str, Any]:
    """A google.rpc.BadRequest as the proto3 JSON Any an upstream's detail renders to."""
    detail = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                          for f, d in violations]
    )
    packed = any_pb2.Any()
    packed.Pack(detail)
    return json_format.MessageToDict(packed)


def status_body(
    code: int, message: str, trailing_metadata: Any = None, pool: DescriptorPool | None = None
) -> dict[str, Any]:
    """The JSON error body; details come from the google.rpc.Status in the trailers when present."""
    details: list[Any] = []
    raw = _details_bin(trailing_metadata)
    if raw:
        try:
            status = status_pb2.Status.FromString(raw)
        except DecodeError:  # a peer's garbage trailer must not turn into a 500 here
            status = None
        if status is not None:
            details = [render_any(d, pool) for d in status.details]
            message = message or status.message
    return {"code": code, "message": message, "details": details}


# A mesh service always ends a failed call with a google.rpc.Status trailer (the kit's interceptor).
# A failure of these codes without one was said by gRPC itself, below the service: a refused
# connection, a reset stream, a deadline the transport enforced. Its words are the library's
# ("failed to connect to all addresses; last error: ...", "Internal error from Core"), so the
# client gets these instead.
TRANSPORT_WORDS: dict[int, str] = {
    code_pb2.UNAVAILABLE: "the service behind this route is not reachable right now; retry shortly",
    code_pb2.DEADLINE_EXCEEDED: "the service behind this route did not answer in time; "
                                "retry, or allow a longer deadline",
    code_pb2.INTERNAL: "the connection to the service broke during the call; "
                       "retry (a write may have been applied: read it back first)",
    code_pb2.UNKNOWN: "the connection to the service broke during the call; "
                      "retry (a write may have been applied: read it back first)",
    code_pb2.CANCELLED: "the call was cancelled before it finished",
}


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError,
                   pool: DescriptorPool | None = None) -> tuple[int, dict]:
    """(HTTP status, body) for a failed call."""
    code = err.code().value[0]
    trailers = err.trailing_metadata()
    message = err.details() or ""
    if code in TRANSPORT_WORDS and _details_bin(trailers) is None:
        message = TRANSPORT_WORDS[code]
    body = status_body(code, message, trailers, pool)
    if code == code_pb2.RESOURCE_EXHAUSTED and is_metadata_too_large(body["message"]):
        return 431, body  # the request's headers were too big for the upstream: not a rate limit
    return http_status(code), body


def is_metadata_too_large(message: str) -> bool:
    """gRPC's refusal of oversized headers ("received metadata size exceeds soft/hard limit ...")."""
    text = message.lower()
    return "metadata size exceeds" in text or "header size exceeds" in text


def render_any(detail: any_pb2.Any, pool: DescriptorPool | None) -> dict[str, Any]:
    """One detail as proto3 JSON Any ({"@type": ...}); the API's own pool first, then google.rpc's."""
    for candidate in (pool, None):
        with contextlib.suppress(TypeError, KeyError, json_format.Error):  # type not in this pool
            return json_format.MessageToDict(detail, descriptor_pool=candidate)
    return {"@type": detail.type_url, "value": base64.b64encode(detail.value).decode()}


def _details_bin(trailing_metadata: Any) -> bytes | None:
    if not trailing_metadata:
        return None
    for key, value in trailing_metadata:
        if key == STATUS_DETAILS_KEY:
            return value if isinstance(value, bytes) else value.encode()
    return None
