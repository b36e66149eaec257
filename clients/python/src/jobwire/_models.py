"""The SDK's own types, and their mapping to and from the jobwire.v1 protos."""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp

from .v1 import broker_service_pb2 as pb
from .v1 import job_pb2

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
Seconds = float | timedelta


class JobState(Enum):
    SCHEDULED = job_pb2.JOB_STATE_SCHEDULED
    READY = job_pb2.JOB_STATE_READY
    ACTIVE = job_pb2.JOB_STATE_ACTIVE
    COMPLETED = job_pb2.JOB_STATE_COMPLETED
    DEAD = job_pb2.JOB_STATE_DEAD
    CANCELLED = job_pb2.JOB_STATE_CANCELLED
    EXPIRED = job_pb2.JOB_STATE_EXPIRED  # not leased before its start deadline
    WAITING = job_pb2.JOB_STATE_WAITING  # for the jobs it depends on

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED, JobState.EXPIRED)


class IdempotencyMode(Enum):
    """What an enqueue does when its idempotency key is remembered: FIRST returns the
    first job; REPLACE (debounce) gives a still pending job the new payload and options;
    EXTEND returns the first job and restarts the key's window."""

    FIRST = job_pb2.IDEMPOTENCY_MODE_FIRST
    REPLACE = job_pb2.IDEMPOTENCY_MODE_REPLACE
    EXTEND = job_pb2.IDEMPOTENCY_MODE_EXTEND


class DependencyFailure(Enum):
    """What a dependant does when a job it depends on ends dead, cancelled or expired,
    or is deleted: FAIL goes dead at once (DEPENDENCY_FAILED), IGNORE counts it done."""

    FAIL = job_pb2.DEPENDENCY_FAILURE_POLICY_FAIL
    IGNORE = job_pb2.DEPENDENCY_FAILURE_POLICY_IGNORE


class BackoffKind(Enum):
    FIXED = job_pb2.BACKOFF_KIND_FIXED
    EXPONENTIAL = job_pb2.BACKOFF_KIND_EXPONENTIAL
    LINEAR = job_pb2.BACKOFF_KIND_LINEAR


@dataclass(frozen=True)
class Backoff:
    """Delay between attempts: `initial` seconds, growing by kind, capped at `max`,
    with up to `jitter` (a fraction) taken off at random."""

    kind: BackoffKind = BackoffKind.EXPONENTIAL
    initial: Seconds = 1.0
    max: Seconds = 3600.0
    multiplier: float = 2.0
    jitter: float = 0.0

    @classmethod
    def fixed(cls, delay: Seconds) -> "Backoff":
        return cls(BackoffKind.FIXED, delay, delay)

    @classmethod
    def exponential(
        cls, initial: Seconds, max: Seconds = 3600.0, multiplier: float = 2.0, jitter: float = 0.0
    ) -> "Backoff":
        return cls(BackoffKind.EXPONENTIAL, initial, max, multiplier, jitter)

    @classmethod
    def linear(cls, step: Seconds, max: Seconds = 3600.0) -> "Backoff":
        return cls(BackoffKind.LINEAR, step, max)

    def to_proto(self) -> job_pb2.BackoffPolicy:
        return job_pb2.BackoffPolicy(
            kind=self.kind.value,
            initial_delay=duration(self.initial),
            max_delay=duration(self.max),
            multiplier=self.multiplier,
            jitter=self.jitter,
        )


@dataclass(frozen=True)
class Progress:
    percent: float
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobFailure:
    type: str
    message: str
    non_retryable: bool


@dataclass(frozen=True)
class EnqueueResult:
    job_id: str
    duplicate: bool
    state: JobState


@dataclass(frozen=True)
class JobInfo:
    """A job as the broker reports it."""

    id: str
    queue: str
    state: JobState
    payload: bytes
    content_type: str
    headers: Mapping[str, str]
    priority: int
    attempt: int  # leases so far, released ones included: never decreases
    max_attempts: int
    progress: Progress | None
    result: bytes
    result_content_type: str
    last_error: JobFailure | None
    cancel_requested: bool
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    traceparent: str
    # Attempts that count against max_attempts: attempt less the leases handed back.
    counted_attempts: int = 0
    depends_on: tuple[str, ...] = ()  # ids of the jobs it waits for
    pending_dependencies: int = 0  # of those, not finished yet (while WAITING)

    def result_json(self) -> Any:
        return json.loads(self.result) if self.result else None


@dataclass(frozen=True)
class FlowJob:
    """One job of Client.enqueue_flow: `ref` names it within the flow; it waits for the
    flow's jobs named in `depends_on_refs`. `job` is a payload (encoded as in enqueue) or
    a JobSpec from `jobwire.job_spec(...)`, whose `depends_on` may name existing jobs."""

    ref: str
    queue: str
    job: Any = b""
    depends_on_refs: Sequence[str] = ()


@dataclass(frozen=True)
class Dependencies:
    """Of Client.get_dependencies: the jobs a job depends on that still exist, in its
    depends_on order (each with its state and result), and the ids no longer stored."""

    jobs: list[JobInfo]
    missing_job_ids: list[str]


@dataclass(frozen=True)
class JobEvent:
    """One message of Client.watch: `kind` is "snapshot", "state", "progress" or "cancel".
    `job` is complete for a snapshot and the final event; otherwise it carries the
    fields the event changed."""

    id: str
    kind: str
    state: JobState
    progress: Progress | None
    job: JobInfo


EVENT_KINDS = {
    pb.EVENT_KIND_SNAPSHOT: "snapshot",
    pb.EVENT_KIND_STATE_CHANGED: "state",
    pb.EVENT_KIND_PROGRESS: "progress",
    pb.EVENT_KIND_CANCEL_REQUESTED: "cancel",
}


def seconds(value: Seconds) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def duration(value: Seconds) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(seconds(value) * 1e9))
    return d


def encode(payload: Any, content_type: str | None) -> tuple[bytes, str]:
    """bytes as they are; str as UTF-8 text; anything else as JSON."""
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload), content_type or ""
    if isinstance(payload, str):
        return payload.encode(), content_type or TEXT
    return json.dumps(payload, separators=(",", ":")).encode(), content_type or JSON


def _time(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def progress_from(p: job_pb2.Progress) -> Progress:
    details = json_format.MessageToDict(p.details) if p.HasField("details") else {}
    return Progress(round(p.percent, 3), p.message, details)


def progress_to(p: Progress) -> job_pb2.Progress:
    out = job_pb2.Progress(percent=p.percent, message=p.message)
    if p.details:
        details = Struct()
        details.update(dict(p.details))
        out.details.CopyFrom(details)
    return out


def job_info(j: job_pb2.Job) -> JobInfo:
    error = None
    if j.HasField("last_error"):
        e = j.last_error
        error = JobFailure(e.type, e.message, e.non_retryable)
    return JobInfo(
        id=j.id,
        queue=j.queue,
        state=JobState(j.state),
        payload=j.spec.payload,
        content_type=j.spec.content_type,
        headers=dict(j.spec.headers),
        priority=j.spec.priority,
        attempt=j.attempt,
        max_attempts=j.spec.max_attempts,
        counted_attempts=j.counted_attempts,
        progress=progress_from(j.progress) if j.HasField("progress") else None,
        result=j.result,
        result_content_type=j.result_content_type,
        last_error=error,
        cancel_requested=j.cancel_requested,
        created_at=_time(j.create_time, j.HasField("create_time")),
        started_at=_time(j.start_time, j.HasField("start_time")),
        finished_at=_time(j.finish_time, j.HasField("finish_time")),
        traceparent=j.spec.trace_context.traceparent,
        depends_on=tuple(j.spec.depends_on),
        pending_dependencies=j.pending_dependencies,
    )


def job_event(e: pb.StreamProgressResponse) -> JobEvent:
    info = job_info(e.job)
    return JobEvent(e.event_id, EVENT_KINDS.get(e.kind, "state"), info.state, info.progress, info)


def _start_deadline(at: datetime | None, within: Seconds | None) -> datetime | None:
    """A start deadline given as a time or as a span from now (this machine's clock)."""
    if at is not None and within is not None:
        raise ValueError("give start_deadline or start_within, not both")
    if within is None:
        return at
    span = within if isinstance(within, timedelta) else timedelta(seconds=within)
    return datetime.now(UTC) + span


def job_spec(
    payload: Any,
    *,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    priority: int = 0,
    delay: Seconds | None = None,
    run_at: datetime | None = None,
    max_attempts: int = 0,
    backoff: Backoff | None = None,
    lease_duration: Seconds | None = None,
    execution_timeout: Seconds | None = None,
    idempotency_key: str | None = None,
    idempotency_window: Seconds | None = None,
    trace: Mapping[str, str] | None = None,
    idempotency_mode: IdempotencyMode | None = None,
    start_deadline: datetime | None = None,
    start_within: Seconds | None = None,
    depends_on: Sequence[str] = (),
    on_dependency_failure: DependencyFailure | None = None,
    concurrency_key: str | None = None,
    concurrency_limit: int = 0,
) -> job_pb2.JobSpec:
    """The JobSpec for a payload and the options of Client.enqueue; `trace` holds W3C
    traceparent/tracestate/baggage values. `start_within` is a start deadline relative
    to now (this machine's clock); give it or `start_deadline`, not both."""
    data, ctype = encode(payload, content_type)
    spec = job_pb2.JobSpec(
        payload=data,
        content_type=ctype,
        headers=dict(headers or {}),
        priority=priority,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key or "",
        depends_on=list(depends_on),
        concurrency_key=concurrency_key or "",
        concurrency_limit=concurrency_limit,
    )
    if on_dependency_failure is not None:
        spec.on_dependency_failure = on_dependency_failure.value
    if run_at is not None:
        spec.run_time.FromDatetime(run_at)
    if backoff is not None:
        spec.backoff.CopyFrom(backoff.to_proto())
    _set_durations(
        spec,
        delay=delay,
        lease_duration=lease_duration,
        execution_timeout=execution_timeout,
        idempotency_window=idempotency_window,
    )
    if idempotency_mode is not None:
        spec.idempotency_mode = idempotency_mode.value
    deadline = _start_deadline(start_deadline, start_within)
    if deadline is not None:
        spec.start_deadline.FromDatetime(deadline)
    if trace:
        spec.trace_context.CopyFrom(
            job_pb2.TraceContext(
                traceparent=trace.get("traceparent", ""),
                tracestate=trace.get("tracestate", ""),
                baggage=trace.get("baggage", ""),
            )
        )
    return spec


def _set_durations(spec: job_pb2.JobSpec, **given: Seconds | None) -> None:
    """Sets each Duration field of `spec` named in `given` whose value is not None."""
    for name, value in given.items():
        if value is not None:
            getattr(spec, name).CopyFrom(duration(value))


def flow_request(jobs: Sequence[FlowJob], traces: Sequence[Mapping[str, str]]) -> Any:
    """The EnqueueFlowRequest of Client.enqueue_flow; each job without a trace context
    of its own gets its creation span's."""
    request = pb.EnqueueFlowRequest()
    for item, trace in zip(jobs, traces, strict=True):
        if isinstance(item.job, job_pb2.JobSpec):
            spec = item.job
            if trace and not spec.HasField("trace_context"):
                spec = job_pb2.JobSpec()
                spec.CopyFrom(item.job)
                spec.trace_context.CopyFrom(job_pb2.TraceContext(**dict(trace)))
        else:
            spec = job_spec(item.job, trace=trace)
        request.jobs.add(
            ref=item.ref, queue=item.queue, job=spec, depends_on_refs=list(item.depends_on_refs)
        )
    return request


def dependencies(reply: Any) -> Dependencies:
    return Dependencies([job_info(j) for j in reply.jobs], list(reply.missing_job_ids))
