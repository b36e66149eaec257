"""Errors of the Jobwire API as Python exceptions, with the google.rpc details decoded.

The google.rpc messages are declared here at run time (a few fields each) so the SDK
needs no dependency beyond grpcio and protobuf to read them.
"""

from dataclasses import dataclass
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

from .v1 import error_reason_pb2

# google.rpc.ErrorInfo.domain of the broker's errors; reasons of other domains are not read.
DOMAIN = "jobwire.dev"
UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"

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
    """An error from the broker. `code` is the gRPC status code, `reason` the name of
    the broker's jobwire.v1.ErrorReason (LEASE_LOST, JOB_NOT_FOUND, ...), or
    "ERROR_REASON_UNSPECIFIED" when the status carried none of ours. The class comes from
    the reason first, then from the code, as in every Jobwire client."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = UNSPECIFIED,
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
    """INVALID_ARGUMENT (reasons INVALID_ARGUMENT, PAYLOAD_TOO_LARGE): `violations` names
    each bad field. Nothing was written; do not retry as is."""


class NotFound(JobwireError):
    """NOT_FOUND: the job never existed or was removed by retention (JOB_NOT_FOUND), the
    queue does not exist (QUEUE_NOT_FOUND), or the schedule does not
    (SCHEDULE_NOT_FOUND)."""


class AlreadyExists(JobwireError):
    """ALREADY_EXISTS (SCHEDULE_EXISTS): CreateSchedule named a schedule that exists.
    Nothing was written; update it instead, or delete it first."""


class FailedPrecondition(JobwireError):
    """FAILED_PRECONDITION: the state of the job or queue does not allow the call. This
    class itself for WRONG_STATE (the job is in the wrong state for an admin operation),
    QUEUE_BUSY (the queue has active jobs) and CROSS_SLOT (on Redis Cluster, a flow or a
    dependency would join jobs of more than one queue); LeaseLost and JobFinished are
    subclasses. Nothing was written; do not retry as is."""


class LeaseLost(FailedPrecondition):
    """LEASE_LOST: the lease expired or was taken over: stop working on the job, drop
    its result."""


class JobFinished(FailedPrecondition):
    """JOB_FINISHED: the job is already completed or dead (CancelJob)."""


class ResourceExhausted(JobwireError):
    """RESOURCE_EXHAUSTED (JOB_TOO_LARGE): a limit was hit; retrying as is fails again."""


class Unavailable(JobwireError):
    """UNAVAILABLE (STORE_UNAVAILABLE, SHUTTING_DOWN): retry with backoff, after
    `retry_after` seconds when the broker says."""


class Unauthenticated(JobwireError):
    """UNAUTHENTICATED: the call has no valid credentials."""


class PermissionDenied(JobwireError):
    """PERMISSION_DENIED: the caller may not do this."""


class Internal(JobwireError):
    """INTERNAL: a bug in the broker."""


_R = error_reason_pb2.ErrorReason
REASON_NAMES = frozenset(_R.keys())
# Keyed by the generated enum, so every reason of the proto must be here (a test walks
# them all).
BY_REASON: dict[int, type[JobwireError]] = {
    _R.INVALID_ARGUMENT: InvalidArgument,
    _R.PAYLOAD_TOO_LARGE: InvalidArgument,
    _R.JOB_NOT_FOUND: NotFound,
    _R.LEASE_LOST: LeaseLost,
    _R.JOB_FINISHED: JobFinished,
    _R.JOB_TOO_LARGE: ResourceExhausted,
    _R.STORE_UNAVAILABLE: Unavailable,
    _R.SHUTTING_DOWN: Unavailable,
    _R.INTERNAL: Internal,
    _R.UNAUTHENTICATED: Unauthenticated,
    _R.PERMISSION_DENIED: PermissionDenied,
    _R.QUEUE_NOT_FOUND: NotFound,
    _R.WRONG_STATE: FailedPrecondition,
    _R.QUEUE_BUSY: FailedPrecondition,
    _R.CROSS_SLOT: FailedPrecondition,
    _R.SCHEDULE_NOT_FOUND: NotFound,
    _R.SCHEDULE_EXISTS: AlreadyExists,
}
BY_CODE: dict[grpc.StatusCode, type[JobwireError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.INTERNAL: Internal,
}


def error_class(code: grpc.StatusCode, reason: str) -> type[JobwireError]:
    """The class for a status: by its reason (a name of ErrorReason), else by its code."""
    if reason in REASON_NAMES and reason != UNSPECIFIED:
        return BY_REASON[_R.Value(reason)]
    return BY_CODE.get(code, JobwireError)


def error_from_rpc(err: grpc.RpcError) -> JobwireError:
    """Maps a gRPC error to the matching JobwireError subclass."""
    call = cast(grpc.Call, err)  # every RpcError the stubs raise is also a Call
    code = call.code()
    message = call.details() or code.name
    reason, violations, retry_after = UNSPECIFIED, [], None
    trailers: Any = call.trailing_metadata() or ()
    for key, value in trailers:
        if key != _DETAILS_KEY:
            continue
        status = _RPC["Status"].FromString(value)
        for detail in status.details:
            kind = detail.type_url.rsplit("/", 1)[-1]
            if kind == "google.rpc.ErrorInfo":
                info = _RPC["ErrorInfo"].FromString(detail.value)
                if info.domain == DOMAIN and info.reason in REASON_NAMES:
                    reason = info.reason
            elif kind == "google.rpc.BadRequest":
                bad = _RPC["BadRequest"].FromString(detail.value)
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif kind == "google.rpc.RetryInfo":
                delay = _RPC["RetryInfo"].FromString(detail.value).retry_delay
                retry_after = delay.seconds + delay.nanos / 1e9
    return error_class(code, reason)(message, code, reason, tuple(violations), retry_after)


def item_error(code: int, reason: str, message: str) -> JobwireError | None:
    """The error of one item of a batch call (ItemStatus), or None when it succeeded."""
    if code == 0:
        return None
    status = next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    known = reason if reason in REASON_NAMES else UNSPECIFIED
    return error_class(status, known)(message or reason, status, known)
