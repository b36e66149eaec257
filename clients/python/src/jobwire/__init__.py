"""Jobwire's Python SDK: a producer client (async, with a sync facade) and a worker
runtime for the Jobwire gRPC job broker. The generated stubs are in ``jobwire.v1``."""

from ._client import ChannelOptions, Client, RetryPolicy
from ._errors import (
    FailedPrecondition,
    FieldViolation,
    Internal,
    InvalidArgument,
    JobFinished,
    JobwireError,
    LeaseLost,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from ._health import WorkerHealth
from ._models import (
    Backoff,
    BackoffKind,
    EnqueueResult,
    JobEvent,
    JobFailure,
    JobInfo,
    JobState,
    Progress,
    job_spec,
)
from ._sync import SyncClient
from ._worker import Job, NonRetryable, RetryAfter, Worker

__all__ = [
    "Backoff",
    "BackoffKind",
    "ChannelOptions",
    "Client",
    "EnqueueResult",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobFailure",
    "JobFinished",
    "JobInfo",
    "JobState",
    "JobwireError",
    "LeaseLost",
    "NonRetryable",
    "NotFound",
    "PermissionDenied",
    "Progress",
    "ResourceExhausted",
    "RetryAfter",
    "RetryPolicy",
    "SyncClient",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerHealth",
    "job_spec",
]
