"""The job model: states, options, records and the results of each transition. Plain
data, no protobuf and no Redis: the api layer maps it to the wire, the store keeps it.

A job's hash in the store holds one field per dataclass field of NewJob (less those
marked ENQUEUE_ONLY) and of JobRecord, under the same name (store/schema.py), so a new
stored option is one field here, parsed in api/requests.py and returned in
api/responses.py."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum

# Metadata of NewJob fields that steer Enqueue itself and are not kept with the job.
ENQUEUE_ONLY = {"enqueue_only": True}


class JobState(StrEnum):
    SCHEDULED = "scheduled"
    READY = "ready"
    ACTIVE = "active"
    COMPLETED = "completed"
    DEAD = "dead"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not leased before its start deadline
    WAITING = "waiting"  # for its dependencies (docs/flows.md)

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED, JobState.EXPIRED)


class IdempotencyMode(IntEnum):
    """What an Enqueue does when its idempotency key is remembered (job.proto)."""

    FIRST = 1  # return the first job
    REPLACE = 2  # debounce: replace a pending job's spec, restart the window
    EXTEND = 3  # return the first job, restart the window


class DependencyPolicy(IntEnum):
    """What a dependency that ends without completing does to its waiting dependants."""

    FAIL = 1
    IGNORE = 2


# The most dependencies one job may have.
MAX_DEPENDENCIES = 100


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


@dataclass(frozen=True, slots=True)
class TraceContext:
    traceparent: str = ""
    tracestate: str = ""
    baggage: str = ""


@dataclass(frozen=True, slots=True)
class NewJob:
    """What a producer asks for, defaults filled in."""

    payload: bytes
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    # None: the job left the option unset, so the queue's setting applies, else the
    # broker's default (filled in by enqueue.lua, atomically with the enqueue).
    priority: int | None = None
    delay_ms: int = field(default=0, metadata=ENQUEUE_ONLY)
    run_at_ms: int = field(default=0, metadata=ENQUEUE_ONLY)
    max_attempts: int | None = None
    backoff: Backoff | None = None
    lease_ms: int | None = None
    timeout_ms: int | None = None
    idempotency_key: str = ""
    idempotency_window_ms: int = field(default=86_400_000, metadata=ENQUEUE_ONLY)
    trace: TraceContext = TraceContext()
    idempotency_mode: IdempotencyMode = field(default=IdempotencyMode.FIRST, metadata=ENQUEUE_ONLY)
    # Dropped (expired) if not leased by then (ms); None: no deadline.
    start_deadline_ms: int | None = None
    # Ids of the jobs it waits for (distinct, existing); enqueue.lua stores them.
    depends_on: tuple[str, ...] = field(default=(), metadata=ENQUEUE_ONLY)
    on_dependency_failure: DependencyPolicy | None = None
    # Jobs of one key run at most concurrency_limit at a time; None (with a key): the
    # queue's setting, else 1 (enqueue.lua).
    concurrency_key: str = ""
    concurrency_limit: int | None = None


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
    # Groups dead letters: a hash of the type and the message with its variable parts
    # replaced (domain/fingerprint.py). Set by the broker, never by a worker.
    fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored: its options (NewJob's stored fields) and its life so far."""

    queue: str
    seq: int
    state: JobState
    payload: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    priority: int = 0
    max_attempts: int = 3
    backoff: Backoff = Backoff()
    lease_ms: int = 30_000
    timeout_ms: int = 0
    idempotency_key: str = ""
    trace: TraceContext = TraceContext()
    attempt: int = 0  # leases handed out: the fencing number, never decreases
    releases: int = 0  # leases handed back uncounted
    token: str = ""
    lease_until_ms: int = 0
    created_ms: int = 0
    run_at_ms: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    progress: Progress | None = None
    result: bytes = b""
    result_content_type: str = ""
    error: JobError | None = None
    cancel_requested: bool = False
    worker_id: str = ""  # of the current or last lease
    start_deadline_ms: int = 0  # 0: none
    depends_on: tuple[str, ...] = ()
    on_dependency_failure: DependencyPolicy = DependencyPolicy.FAIL
    pending_dependencies: int = 0  # while waiting
    concurrency_key: str = ""
    concurrency_limit: int = 0  # as applied at enqueue (0 without a key)

    @property
    def id(self) -> str:
        return f"{self.queue}:{self.seq}"

    @property
    def counted_attempts(self) -> int:
        """What max_attempts limits: attempts less the leases handed back."""
        return self.attempt - self.releases


class Outcome(Enum):
    """How one transition of one job went."""

    OK = "ok"
    NOT_FOUND = "not found"
    LEASE_LOST = "lease lost"
    JOB_FINISHED = "job finished"


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
    paused: bool = False  # the queue is paused: nothing was leased for that reason
    retry_after_ms: int | None = None  # set when a rate limit or a hold kept jobs back


@dataclass(frozen=True, slots=True)
class HeartbeatItem:
    seq: int
    token: str
    extension_ms: int = 0
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    outcome: Outcome
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
    error: JobError  # its fingerprint set (domain/fingerprint.py)
    retry_delay_ms: int = -1  # -1: the job's backoff policy
    template: str = ""  # the error message with its variable parts replaced
    rate_limit_delay_ms: int = 0  # > 0: handed back, its key (or queue) held this long


@dataclass(frozen=True, slots=True)
class ReleaseItem:
    """A lease handed back uncounted, ready again after delay_ms."""

    seq: int
    token: str
    delay_ms: int = 0


@dataclass(frozen=True, slots=True)
class ItemResult:
    outcome: Outcome
    reason: str  # why, when not OK
    trace: TraceContext = TraceContext()  # the job's, when OK


@dataclass(frozen=True, slots=True)
class FailResult:
    """Of a Fail or a release: the job's state after it, and when it is due again."""

    outcome: Outcome
    reason: str
    state: JobState | None
    due_ms: int
    trace: TraceContext = TraceContext()  # the job's, when OK


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
    outcome: Outcome
    state: JobState | None


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of a job's event stream; stored under the same field names."""

    id: str
    time_ms: int
    kind: str  # "state", "progress", "cancel" or "deleted" (the job was deleted: the last)
    state: JobState
    attempt: int = 0
    progress: Progress | None = None
    error: JobError | None = None


@dataclass(frozen=True, slots=True)
class QueueEvent:
    """One entry of a queue's event stream (WatchQueue); stored under the same names.
    `kind` is a QueueEventKind name in lower case ("enqueued", "leased", ...); `job` is
    the job's sequence number, 0 for queue-wide events."""

    id: str
    time_ms: int
    kind: str
    job: int = 0
    state: JobState | None = None
    attempt: int = 0
    progress: Progress | None = None
    error: JobError | None = None


@dataclass(frozen=True, slots=True)
class Retention:
    completed_age_ms: int = 3_600_000
    completed_count: int = 10_000
    dead_age_ms: int = 7 * 86_400_000
    dead_count: int = 100_000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` leases in any window of `period_ms` (Redis time)."""

    limit: int
    period_ms: int


# The QueueSettings fields that hold a RateLimit.
RATE_LIMIT_SETTINGS = ("rate_limit", "key_rate_limit")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """A queue's settings; None inherits the broker's default. Field names are the
    stored names: the job defaults are the job fields enqueue.lua fills in."""

    max_attempts: int | None = None
    backoff: Backoff | None = None
    lease_ms: int | None = None
    timeout_ms: int | None = None
    priority: int | None = None
    keep_completed: int | None = None
    completed_max_age_ms: int | None = None
    keep_dead: int | None = None
    dead_max_age_ms: int | None = None
    event_history: int | None = None
    concurrency_limit: int | None = None
    rate_limit: RateLimit | None = None
    key_rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class QueueMinute:
    start_ms: int
    completed: int
    failed: int
    dead: int


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    settings: QueueSettings
    counts: Mapping[JobState, int]
    oldest_ready_age_ms: int | None
    completed_last_minute: int
    failed_last_minute: int
    last_hour: list[QueueMinute]
    workers: tuple[str, ...] = ()
