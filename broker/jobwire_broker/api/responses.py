"""Maps store records to protobuf messages."""

import json
from functools import lru_cache

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import job_pb2

from ..domain.broker import WatchEvent
from ..domain.model import Backoff, FailResult, JobError, JobRecord, JobState, Progress

STATES = {
    JobState.SCHEDULED: job_pb2.JOB_STATE_SCHEDULED,
    JobState.READY: job_pb2.JOB_STATE_READY,
    JobState.ACTIVE: job_pb2.JOB_STATE_ACTIVE,
    JobState.COMPLETED: job_pb2.JOB_STATE_COMPLETED,
    JobState.DEAD: job_pb2.JOB_STATE_DEAD,
    JobState.CANCELLED: job_pb2.JOB_STATE_CANCELLED,
    JobState.EXPIRED: job_pb2.JOB_STATE_EXPIRED,
    JobState.WAITING: job_pb2.JOB_STATE_WAITING,
}
EVENT_KINDS = {
    "state": pb.EVENT_KIND_STATE_CHANGED,
    "progress": pb.EVENT_KIND_PROGRESS,
    "cancel": pb.EVENT_KIND_CANCEL_REQUESTED,
}


def timestamp(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1_000, nanos=(ms % 1_000) * 1_000_000)


def duration(ms: int) -> Duration:
    return Duration(seconds=ms // 1_000, nanos=(ms % 1_000) * 1_000_000)


def progress(p: Progress) -> job_pb2.Progress:
    message = job_pb2.Progress(percent=p.percent, message=p.message)
    if p.details_json:
        details = Struct()
        json_format.ParseDict(json.loads(p.details_json), details)
        message.details.CopyFrom(details)
    return message


def error(e: JobError) -> job_pb2.JobError:
    return job_pb2.JobError(type=e.type, message=e.message, non_retryable=e.non_retryable)


@lru_cache(maxsize=256)
def backoff(b: Backoff) -> job_pb2.BackoffPolicy:
    """Cached: most jobs share a handful of policies. Callers must not mutate it."""
    return job_pb2.BackoffPolicy(
        kind=job_pb2.BackoffKind.ValueType(b.kind),
        initial_delay=duration(b.initial_ms),
        max_delay=duration(b.max_ms),
        multiplier=b.multiplier,
        jitter=b.jitter,
    )


def spec(job: JobRecord) -> job_pb2.JobSpec:
    out = job_pb2.JobSpec(
        payload=job.payload,
        content_type=job.content_type,
        headers=job.headers,
        priority=job.priority,
        max_attempts=job.max_attempts,
        backoff=backoff(job.backoff),
        lease_duration=duration(job.lease_ms),
        idempotency_key=job.idempotency_key,
        concurrency_key=job.concurrency_key,
        concurrency_limit=job.concurrency_limit,
        trace_context=job_pb2.TraceContext(
            traceparent=job.trace.traceparent,
            tracestate=job.trace.tracestate,
            baggage=job.trace.baggage,
        ),
        depends_on=job.depends_on,
    )
    if job.depends_on:
        out.on_dependency_failure = job_pb2.DependencyFailurePolicy.ValueType(
            job.on_dependency_failure
        )
    if job.timeout_ms:
        out.execution_timeout.CopyFrom(duration(job.timeout_ms))
    if job.start_deadline_ms:
        out.start_deadline.CopyFrom(timestamp(job.start_deadline_ms))
    return out


def job(j: JobRecord) -> job_pb2.Job:
    out = job_pb2.Job(
        id=j.id,
        queue=j.queue,
        state=STATES[j.state],
        spec=spec(j),
        attempt=j.attempt,
        counted_attempts=j.counted_attempts,
        worker_id=j.worker_id,
        result=j.result,
        result_content_type=j.result_content_type,
        cancel_requested=j.cancel_requested,
        create_time=timestamp(j.created_ms),
        run_time=timestamp(j.run_at_ms),
        pending_dependencies=j.pending_dependencies if j.state is JobState.WAITING else 0,
    )
    if j.progress:
        out.progress.CopyFrom(progress(j.progress))
    if j.error:
        out.last_error.CopyFrom(error(j.error))
    if j.started_ms:
        out.start_time.CopyFrom(timestamp(j.started_ms))
    if j.finished_ms:
        out.finish_time.CopyFrom(timestamp(j.finished_ms))
    if j.state is JobState.ACTIVE:
        out.lease_expire_time.CopyFrom(timestamp(j.lease_until_ms))
    return out


def fail_response(r: FailResult) -> pb.FailResponse:
    response = pb.FailResponse()
    if r.state is not None:
        response.state = STATES[r.state]
    if r.due_ms:
        response.retry_time.CopyFrom(timestamp(r.due_ms))
    return response


def release_response(r: FailResult) -> pb.ReleaseLeaseResponse:
    response = pb.ReleaseLeaseResponse(ready_time=timestamp(r.due_ms))
    if r.state is not None:
        response.state = STATES[r.state]
    return response


def leased_job(j: JobRecord) -> pb.LeasedJob:
    return pb.LeasedJob(
        job=job(j),
        lease_token=j.token,
        lease_expire_time=timestamp(j.lease_until_ms),
        attempt=j.attempt,
    )


def watch_event(w: WatchEvent, queue: str, job_id: str) -> pb.StreamProgressResponse:
    ev = w.event
    if ev is None:  # a snapshot: the whole job, timed by its latest change
        assert w.job is not None
        j = w.job
        return pb.StreamProgressResponse(
            event_id=w.id,
            kind=pb.EVENT_KIND_SNAPSHOT,
            event_time=timestamp(max(j.created_ms, j.started_ms, j.finished_ms)),
            job=job(j),
        )
    out = pb.StreamProgressResponse(
        event_id=w.id, kind=EVENT_KINDS[ev.kind], event_time=timestamp(ev.time_ms)
    )
    if w.job is not None:  # the terminal event carries the whole job
        out.job.CopyFrom(job(w.job))
        return out
    out.job.CopyFrom(
        job_pb2.Job(id=job_id, queue=queue, state=STATES[ev.state], attempt=ev.attempt)
    )
    if ev.progress:
        out.job.progress.CopyFrom(progress(ev.progress))
    if ev.error:
        out.job.last_error.CopyFrom(error(ev.error))
    return out
