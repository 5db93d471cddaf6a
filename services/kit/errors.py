"""Domain errors and how they become gRPC statuses with `google.rpc` details.

Domain code raises these (no grpc import needed in domain.py); the error interceptor turns
them into a precise status. Anything else becomes INTERNAL with no internals in the message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


@dataclass(eq=False)
class DomainError(Exception):
    """Base of every error a domain means to send to its caller."""

    message: str
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def details(self) -> list[any_pb2.Any]:
        return []

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        status.details.extend(self.details())
        return status


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


@dataclass(eq=False)
class InvalidArgument(DomainError):
    """Bad input. `violations` maps field path -> what is wrong with it, for BadRequest details."""

    violations: dict[str, str] = field(default_factory=dict)
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INVALID_ARGUMENT

    @classmethod
    def field(cls, name: str, problem: str) -> InvalidArgument:
        return cls(f"{name}: {problem}", {name: problem})

    @classmethod
    def fields(cls, violations: dict[str, str]) -> InvalidArgument:
        text = "; ".join(f"{k}: {v}" for k, v in violations.items())
        return cls(text, dict(violations))

    def details(self) -> list[any_pb2.Any]:
        if not self.violations:
            return []
        return [
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=k, description=v)
                        for k, v in self.violations.items()
                    ]
                )
            )
        ]


@dataclass(eq=False)
class NotFound(DomainError):
    resource_type: str = ""
    resource_name: str = ""
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.NOT_FOUND

    @classmethod
    def of(cls, resource_type: str, name: str) -> NotFound:
        return cls(f"{resource_type} {name!r} not found", resource_type, name)

    def details(self) -> list[any_pb2.Any]:
        if not self.resource_type:
            return []
        return [_pack(error_details_pb2.ResourceInfo(resource_type=self.resource_type,
                                                     resource_name=self.resource_name))]


@dataclass(eq=False)
class AlreadyExists(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.ALREADY_EXISTS


@dataclass(eq=False)
class FailedPrecondition(DomainError):
    """The system is not in a state that allows the call (poll closed, order already paid...)."""

    violation_type: str = ""
    subject: str = ""
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> list[any_pb2.Any]:
        if not self.violation_type:
            return []
        return [
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=self.violation_type, subject=self.subject, description=self.message
                        )
                    ]
                )
            )
        ]


@dataclass(eq=False)
class Aborted(DomainError):
    """A concurrency conflict the caller may retry (a bid lost a race)."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.ABORTED


@dataclass(eq=False)
class PermissionDenied(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.PERMISSION_DENIED


@dataclass(eq=False)
class Unauthenticated(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNAUTHENTICATED


@dataclass(eq=False)
class ResourceExhausted(DomainError):
    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.RESOURCE_EXHAUSTED


@dataclass(eq=False)
class OutOfRange(DomainError):
    """A position past the end (a resume_from beyond the last sequence, a page past the last)."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.OUT_OF_RANGE


@dataclass(eq=False)
class Unavailable(DomainError):
    """A dependency (store, broker, another service) does not answer; the caller may retry."""

    code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNAVAILABLE


def _driver_outages() -> tuple[type[BaseException], ...]:
    """Driver exceptions that mean "the database does not answer" (retryable), not a bug."""
    kinds: list[type[BaseException]] = []
    try:
        import psycopg2

        kinds += [psycopg2.OperationalError, psycopg2.InterfaceError]
    except ImportError:
        pass
    try:
        import pymongo.errors

        kinds += [pymongo.errors.ConnectionFailure]  # includes AutoReconnect, ServerSelectionTimeout
    except ImportError:
        pass
    try:
        import cassandra
        import cassandra.cluster

        kinds += [cassandra.cluster.NoHostAvailable, cassandra.OperationTimedOut, cassandra.Unavailable,
                  cassandra.ReadTimeout, cassandra.WriteTimeout]
    except ImportError:
        pass
    return tuple(kinds)


DRIVER_OUTAGES = _driver_outages()


def outage_status(exc: BaseException, request_id: str) -> status_pb2.Status | None:
    """UNAVAILABLE for a database that does not answer (the caller may retry), else None."""
    if not isinstance(exc, DRIVER_OUTAGES):
        return None
    message = f"a database this service needs does not answer; retry shortly (request id {request_id})"
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    status.details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    return status


def enum_value(kind, number: int, field: str):
    """A request's enum number as the domain's IntEnum, or INVALID_ARGUMENT naming the field
    (proto3 lets a client send any number, not only the declared ones)."""
    try:
        return kind(number)
    except ValueError:
        allowed = ", ".join(f"{m.value} ({m.name})" for m in kind)
        raise InvalidArgument.field(field, f"{number} is not one of {allowed}") from None


def internal_status(request_id: str) -> status_pb2.Status:
    """What an unexpected exception becomes: no type, no text, no trace; the request id finds the log."""
    message = f"internal error; the server log has the details under request id {request_id}"
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=message)
    status.details.append(_pack(error_details_pb2.RequestInfo(request_id=request_id)))
    return status


def status_code(status: status_pb2.Status) -> grpc.StatusCode:
    return _BY_NUMBER[status.code]


_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def field_violations(details: Iterable[any_pb2.Any]) -> dict[str, str]:
    """Read BadRequest violations back out of status details (for clients and tests)."""
    out: dict[str, str] = {}
    for d in details:
        if d.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            br = error_details_pb2.BadRequest()
            d.Unpack(br)
            out.update({v.field: v.description for v in br.field_violations})
    return out
