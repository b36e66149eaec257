"""Plain data the store reads and writes. No protobuf, no gRPC: the layers above map."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    READY = "ready"
    ACTIVE = "active"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED)


class BackoffKind(IntEnum):
    FIXED = 1
    EXPONENTIAL = 2
    LINEAR = 3


@dataclass(frozen=True, slots=True)
class Backoff:
    kind: BackoffKind = BackoffKind.EXPONENTIAL
    initial_ms: int = 1_000
    max_ms: int = 3_600_000
    multiplier: float = 2.0
    jitter: float = 0.0

    def spec(self) -> str:
        """The form lib.lua's backoff_delay parses."""
        return (
            f"{int(self.kind)},{self.initial_ms},{self.max_ms},"
            f"{self.multiplier:.6f},{self.jitter:.6f}"
        )

    @classmethod
    def parse(cls, spec: str) -> "Backoff":
        kind, initial, cap, mult, jitter = spec.split(",")
        return cls(BackoffKind(int(kind)), int(initial), int(cap), float(mult), float(jitter))


@dataclass(frozen=True, slots=True)
class TraceContext:
    traceparent: str = ""
    tracestate: str = ""
    baggage: str = ""


@dataclass(frozen=True, slots=True)
class NewJob:
    payload: bytes
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    delay_ms: int = 0
    run_at_ms: int = 0
    max_attempts: int = 3
    backoff: Backoff = Backoff()
    lease_ms: int = 30_000
    timeout_ms: int = 0
    idempotency_key: str = ""
    idempotency_window_ms: int = 86_400_000
    trace: TraceContext = TraceContext()


@dataclass(frozen=True, slots=True)
class Enqueued:
    seq: int
    duplicate: bool
    state: JobState


@dataclass(frozen=True, slots=True)
class Progress:
    percent: float
    message: str = ""
    details_json: str = ""


@dataclass(frozen=True, slots=True)
class JobError:
    type: str
    message: str = ""
    non_retryable: bool = False


@dataclass(frozen=True, slots=True)
class JobRecord:
    queue: str
    seq: int
    state: JobState
    payload: bytes
    content_type: str
    headers: Mapping[str, str]
    priority: int
    max_attempts: int
    backoff: Backoff
    lease_ms: int
    timeout_ms: int
    idempotency_key: str
    trace: TraceContext
    attempt: int  # leases handed out: the fencing number, never decreases
    counted_attempts: int  # attempt minus released leases: what max_attempts limits
    token: str
    lease_until_ms: int
    created_ms: int
    run_at_ms: int
    started_ms: int
    finished_ms: int
    progress: Progress | None
    result: bytes
    result_content_type: str
    error: JobError | None
    cancel_requested: bool

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.seq}"


@dataclass(frozen=True, slots=True)
class TooLarge:
    """The first ready job, when it alone exceeds a Lease's byte budget."""

    seq: int
    reply_bytes: int


@dataclass(frozen=True, slots=True)
class LeaseBatch:
    jobs: list[JobRecord]
    next_due_in_ms: int | None  # set when nothing was ready but a job is scheduled
    too_large: TooLarge | None = None  # set when nothing was leased for that reason


@dataclass(frozen=True, slots=True)
class HeartbeatItem:
    seq: int
    token: str
    extension_ms: int = 0
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    code: int
    reason: str
    lease_until_ms: int
    cancel_requested: bool


@dataclass(frozen=True, slots=True)
class CompleteItem:
    seq: int
    token: str
    result: bytes = b""
    content_type: str = ""


@dataclass(frozen=True, slots=True)
class FailItem:
    seq: int
    token: str
    error: JobError
    retry_delay_ms: int = -1  # -1: the job's backoff policy
    release: bool = False  # hand back without counting the attempt


@dataclass(frozen=True, slots=True)
class ItemResult:
    code: int
    reason: str
    trace: TraceContext = TraceContext()  # the job's, when code is OK


@dataclass(frozen=True, slots=True)
class FailResult:
    code: int
    reason: str
    state: JobState | None
    due_ms: int
    trace: TraceContext = TraceContext()  # the job's, when code is OK


@dataclass(frozen=True, slots=True)
class Reclaimed:
    """A lease the maintenance loop took back as a failed attempt."""

    seq: int
    state: JobState  # after: ready or scheduled (retry), dead, or cancelled
    error_type: str  # LEASE_EXPIRED or EXECUTION_TIMEOUT
    attempt: int
    trace: TraceContext


@dataclass(frozen=True, slots=True)
class CancelResult:
    code: int
    state: JobState | None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    time_ms: int
    kind: str  # "state", "progress" or "cancel"
    state: JobState
    attempt: int
    progress: Progress | None
    error: JobError | None


@dataclass(frozen=True, slots=True)
class Retention:
    completed_age_ms: int = 3_600_000
    completed_count: int = 10_000
    dead_age_ms: int = 7 * 86_400_000
    dead_count: int = 100_000
