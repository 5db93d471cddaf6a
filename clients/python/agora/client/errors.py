"""AgoraError: the one exception the client raises for a failed call, google.rpc details decoded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped, unused-ignore]

_DETAILS_KEY = "grpc-status-details-bin"

# Every google.rpc detail type a server of the mesh may attach, by full name.
_DETAIL_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (
        error_details_pb2.BadRequest, error_details_pb2.ErrorInfo, error_details_pb2.RetryInfo,
        error_details_pb2.ResourceInfo, error_details_pb2.PreconditionFailure, error_details_pb2.QuotaFailure,
        error_details_pb2.RequestInfo, error_details_pb2.DebugInfo, error_details_pb2.Help,
        error_details_pb2.LocalizedMessage,
    )
}

_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


class AgoraError(Exception):
    """A call the mesh refused or could not answer.

    `code` is the gRPC status code, `message` the server's text, `details` the decoded
    `google.rpc` detail messages (BadRequest, ErrorInfo, ResourceInfo, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str, details: Iterable[Message] = ()) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details: list[Message] = list(details)

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> AgoraError:
        """Build from a sync `grpc.RpcError` or a `grpc.aio.AioRpcError`."""
        # every RpcError the client sees is also a Call: code(), details(), trailing_metadata()
        call: Any = error
        code = call.code() if callable(getattr(call, "code", None)) else grpc.StatusCode.UNKNOWN
        message = call.details() if callable(getattr(call, "details", None)) else str(error)
        trailing: Any = (call.trailing_metadata() if callable(getattr(call, "trailing_metadata", None))
                         else None)
        details: list[Message] = []
        for key, value in trailing or ():
            if key == _DETAILS_KEY and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                details = [_unpack(d) for d in status.details]
        return cls(code or grpc.StatusCode.UNKNOWN, str(message or ""), details)

    @classmethod
    def from_status(cls, status: status_pb2.Status) -> AgoraError:
        """Build from a google.rpc.Status (a batch result's), as from_rpc_error would for that call."""
        return cls(code_of(status.code), status.message, [_unpack(d) for d in status.details])

    def detail(self, kind: type[Any]) -> Any:
        """The first detail of type `kind` (e.g. `error_details_pb2.ErrorInfo`), or None."""
        return next((d for d in self.details if isinstance(d, kind)), None)

    @property
    def field_violations(self) -> dict[str, str]:
        """BadRequest violations: field path -> what is wrong with it."""
        out: dict[str, str] = {}
        for d in self.details:
            if isinstance(d, error_details_pb2.BadRequest):
                out.update({v.field: v.description for v in d.field_violations})
        return out

    @property
    def reason(self) -> str:
        """ErrorInfo's machine-readable reason ('' when the server sent none)."""
        info = self.detail(error_details_pb2.ErrorInfo)
        return info.reason if info is not None else ""

    @property
    def retry_after(self) -> float | None:
        """RetryInfo's delay in seconds, when the server said when to retry."""
        info = self.detail(error_details_pb2.RetryInfo)
        return float(info.retry_delay.ToTimedelta().total_seconds()) if info is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The grpc-gateway style body: {"code", "message", "details"} (details in proto3 JSON)."""
        from google.protobuf import json_format

        details = []
        for d in self.details:
            body = json_format.MessageToDict(d)
            details.append({"@type": f"type.googleapis.com/{d.DESCRIPTOR.full_name}", **body})
        return {"code": self.code.name, "message": self.message, "details": details}


def _unpack(packed: any_pb2.Any) -> Message:
    name = packed.TypeName()
    cls = _DETAIL_TYPES.get(name)
    if cls is None:
        return packed  # unknown detail: kept packed, still inspectable
    out = cls()
    packed.Unpack(out)
    return out


def code_of(number: int) -> grpc.StatusCode:
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)
