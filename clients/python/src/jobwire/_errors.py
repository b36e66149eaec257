"""Errors of the Jobwire API as Python exceptions, with the google.rpc details decoded.

The google.rpc messages are declared here at run time (a few fields each) so the SDK
needs no dependency beyond grpcio and protobuf to read them.
"""

from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _google_rpc_messages() -> dict[str, Any]:
    def field(
        name: str,
        number: int,
        kind: "_F.Type.ValueType",
        repeated: bool = False,
        type_name: str = "",
    ) -> _F:
        label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
        out = _F(name=name, number=number, type=kind, label=label)
        if type_name:
            out.type_name = type_name
        return out

    file = descriptor_pb2.FileDescriptorProto(
        name="jobwire/_google_rpc.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    file.message_type.add(
        name="Status",
        field=[
            field("code", 1, _F.TYPE_INT32),
            field("message", 2, _F.TYPE_STRING),
            field("details", 3, _F.TYPE_MESSAGE, True, ".google.protobuf.Any"),
        ],
    )
    file.message_type.add(
        name="ErrorInfo",
        field=[field("reason", 1, _F.TYPE_STRING), field("domain", 2, _F.TYPE_STRING)],
    )
    bad = file.message_type.add(
        name="BadRequest",
        field=[
            field(
                "field_violations",
                1,
                _F.TYPE_MESSAGE,
                True,
                ".google.rpc.BadRequest.FieldViolation",
            )
        ],
    )
    bad.nested_type.add(
        name="FieldViolation",
        field=[field("field", 1, _F.TYPE_STRING), field("description", 2, _F.TYPE_STRING)],
    )
    file.message_type.add(
        name="RetryInfo",
        field=[field("retry_delay", 1, _F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")],
    )
    pool = descriptor_pool.DescriptorPool()
    from google.protobuf import duration_pb2

    for dep in (any_pb2, duration_pb2):
        pool.AddSerializedFile(dep.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    names = ("Status", "ErrorInfo", "BadRequest", "RetryInfo")
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{n}"))
        for n in names
    }


_RPC = _google_rpc_messages()
_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class JobwireError(Exception):
    """An error from the broker. `code` is the gRPC status code, `reason` the stable
    machine-readable reason (LEASE_LOST, JOB_NOT_FOUND, ...)."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        violations: tuple[FieldViolation, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.violations = violations
        self.retry_after = retry_after


class InvalidArgument(JobwireError):
    """The request was malformed; `violations` names each bad field. Nothing was written."""


class NotFound(JobwireError):
    """The job does not exist (or was removed by retention)."""


class LeaseLost(JobwireError):
    """The lease expired or was taken over: stop working on the job, drop its result."""


class FailedPrecondition(JobwireError):
    """The job is in a state that does not allow the call (e.g. cancelling a finished job)."""


class Unavailable(JobwireError):
    """The broker or its store could not be reached; safe to retry idempotent calls."""


_BY_CODE: dict[grpc.StatusCode, type[JobwireError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
}


def error_from_rpc(err: grpc.RpcError) -> JobwireError:
    """Maps a gRPC error to the matching JobwireError subclass."""
    call = cast(grpc.Call, err)  # every RpcError the stubs raise is also a Call
    code = call.code()
    message = call.details() or code.name
    reason, violations, retry_after = "", [], None
    trailers: Any = call.trailing_metadata() or ()
    for key, value in trailers:
        if key != _DETAILS_KEY:
            continue
        status = _RPC["Status"].FromString(value)
        for detail in status.details:
            kind = detail.type_url.rsplit("/", 1)[-1]
            if kind == "google.rpc.ErrorInfo":
                reason = _RPC["ErrorInfo"].FromString(detail.value).reason
            elif kind == "google.rpc.BadRequest":
                bad = _RPC["BadRequest"].FromString(detail.value)
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif kind == "google.rpc.RetryInfo":
                delay = _RPC["RetryInfo"].FromString(detail.value).retry_delay
                retry_after = delay.seconds + delay.nanos / 1e9
    cls = _BY_CODE.get(code, JobwireError)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        cls = LeaseLost if reason == "LEASE_LOST" else FailedPrecondition
    return cls(message, code, reason, tuple(violations), retry_after)


def item_error(code: int, reason: str, message: str) -> JobwireError | None:
    """The error of one item of a batch call (ItemStatus), or None when it succeeded."""
    if code == 0:
        return None
    status = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    cls = _BY_CODE.get(status, JobwireError)
    if status == grpc.StatusCode.FAILED_PRECONDITION:
        cls = LeaseLost if reason == "LEASE_LOST" else FailedPrecondition
    return cls(message or reason, status, reason)
