"""Domain errors. Each carries a canonical code and a stable reason; the gRPC layer
turns them into a status in exactly one place (api/errors.py)."""

from dataclasses import dataclass, field
from enum import Enum

from .model import Outcome


class ErrorCode(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    ALREADY_EXISTS = "ALREADY_EXISTS"


class Reason:
    """Stable machine-readable reasons, sent as google.rpc.ErrorInfo.reason: the names
    of protos/jobwire/v1/error_reason.proto's ErrorReason (a test holds them equal)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    LEASE_LOST = "LEASE_LOST"
    JOB_FINISHED = "JOB_FINISHED"
    JOB_TOO_LARGE = "JOB_TOO_LARGE"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    INTERNAL = "INTERNAL"
    UNAUTHENTICATED = "UNAUTHENTICATED"  # not sent until authentication exists
    PERMISSION_DENIED = "PERMISSION_DENIED"  # not sent until authorization exists
    QUEUE_NOT_FOUND = "QUEUE_NOT_FOUND"
    WRONG_STATE = "WRONG_STATE"
    QUEUE_BUSY = "QUEUE_BUSY"
    CROSS_SLOT = "CROSS_SLOT"
    SCHEDULE_NOT_FOUND = "SCHEDULE_NOT_FOUND"
    SCHEDULE_EXISTS = "SCHEDULE_EXISTS"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    payload_too_large: bool = False  # a payload or result over the size limit


@dataclass
class JobwireError(Exception):
    code: ErrorCode
    reason: str
    message: str
    violations: list[FieldViolation] = field(default_factory=list)
    subject: str = ""  # what a FAILED_PRECONDITION is about, e.g. "lease_token"
    retryable: bool = True  # for UNAVAILABLE and RESOURCE_EXHAUSTED: send RetryInfo

    def __str__(self) -> str:
        return self.message


def invalid(violations: list[FieldViolation]) -> JobwireError:
    too_large = any(v.payload_too_large for v in violations)
    reason = Reason.PAYLOAD_TOO_LARGE if too_large else Reason.INVALID_ARGUMENT
    summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return JobwireError(ErrorCode.INVALID_ARGUMENT, reason, summary, violations)


def not_found(job_id: str) -> JobwireError:
    return JobwireError(ErrorCode.NOT_FOUND, Reason.JOB_NOT_FOUND, f"job {job_id} not found")


def lease_lost(job_id: str, detail: str) -> JobwireError:
    return JobwireError(
        ErrorCode.FAILED_PRECONDITION,
        Reason.LEASE_LOST,
        f"lease on job {job_id} lost: {detail}",
        subject="lease_token",
    )


def job_finished(job_id: str, state: str) -> JobwireError:
    return JobwireError(
        ErrorCode.FAILED_PRECONDITION,
        Reason.JOB_FINISHED,
        f"job {job_id} is already {state}",
        subject=f"job:{job_id}",
    )


def job_too_large(job_id: str, reply_bytes: int, max_bytes: int) -> JobwireError:
    return JobwireError(
        ErrorCode.RESOURCE_EXHAUSTED,
        Reason.JOB_TOO_LARGE,
        f"job {job_id} needs up to {reply_bytes} bytes in a Lease reply, more than the"
        f" {max_bytes} allowed: raise max_response_bytes (and the client's receive limit)",
        retryable=False,
    )


def shutting_down() -> JobwireError:
    return JobwireError(
        ErrorCode.UNAVAILABLE, Reason.SHUTTING_DOWN, "broker is shutting down; retry elsewhere"
    )


def store_unavailable(detail: str) -> JobwireError:
    return JobwireError(
        ErrorCode.UNAVAILABLE, Reason.STORE_UNAVAILABLE, f"job store unavailable: {detail}"
    )


def queue_not_found(queue: str) -> JobwireError:
    return JobwireError(ErrorCode.NOT_FOUND, Reason.QUEUE_NOT_FOUND, f"queue {queue!r} not found")


def wrong_state(job_id: str, state: str, wanted: str) -> JobwireError:
    """An operation that does not apply to the job's state; `wanted` says which do."""
    return JobwireError(
        ErrorCode.FAILED_PRECONDITION,
        Reason.WRONG_STATE,
        f"job {job_id} is {state}; this applies only to {wanted} jobs",
        subject=f"job:{job_id}",
    )


def queue_busy(queue: str, active: int) -> JobwireError:
    return JobwireError(
        ErrorCode.FAILED_PRECONDITION,
        Reason.QUEUE_BUSY,
        f"queue {queue!r} has {active} active jobs; wait for them or use force",
        subject=f"queue:{queue}",
    )


def cross_slot(detail: str) -> JobwireError:
    return JobwireError(ErrorCode.FAILED_PRECONDITION, Reason.CROSS_SLOT, detail)


def schedule_not_found(name: str) -> JobwireError:
    return JobwireError(
        ErrorCode.NOT_FOUND, Reason.SCHEDULE_NOT_FOUND, f"schedule {name!r} not found"
    )


def schedule_exists(name: str) -> JobwireError:
    return JobwireError(
        ErrorCode.ALREADY_EXISTS, Reason.SCHEDULE_EXISTS, f"schedule {name!r} already exists"
    )


def item_error(outcome: Outcome, job_id: str, reason: str) -> JobwireError | None:
    """The error one item's outcome amounts to, or None when it went through."""
    if outcome is Outcome.OK:
        return None
    if outcome is Outcome.NOT_FOUND:
        return not_found(job_id)
    if outcome is Outcome.LEASE_LOST:
        return lease_lost(job_id, reason)
    return job_finished(job_id, reason)
