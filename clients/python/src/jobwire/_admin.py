"""The admin client: a queue's settings, counts, jobs, dead letters, events and workers
(jobwire.v1.AdminService), async as `Admin` and blocking as `SyncAdmin`."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from . import _service_config as service_config
from ._client import DEFAULT_TARGET, ChannelOptions, Client, RetryPolicy
from ._errors import JobwireError, Unavailable, error_from_rpc
from ._models import (
    Backoff,
    BackoffKind,
    JobFailure,
    JobInfo,
    JobState,
    Progress,
    Seconds,
    duration,
    job_info,
    progress_from,
)
from ._schedules import IDEMPOTENT as SCHEDULE_IDEMPOTENT
from ._schedules import Schedules, SyncSchedules
from ._sync import SyncClient
from ._trace import grpc_metadata
from .v1 import admin_service_pb2 as pb
from .v1 import admin_service_pb2_grpc as rpc
from .v1 import job_pb2

T = TypeVar("T")
SERVICE = "jobwire.v1.AdminService"

# Methods that may run twice with the same effect: retried on UNAVAILABLE. gRPC does it
# when the service config has a retryPolicy for the method; otherwise the client does.
IDEMPOTENT = frozenset(
    {
        "ListQueues",
        "GetQueue",
        "UpdateQueue",
        "PauseQueue",
        "ResumeQueue",
        "ListJobs",
        "ListDeadLetterGroups",
        "ListWorkers",
    }
)


def client_retried(config: str | None) -> frozenset[str]:
    """The idempotent methods the service config does not retry: the client retries
    those itself, so no call is retried twice over."""
    configured: set[str] = set()
    for entry in json.loads(config or service_config.document())["methodConfig"]:
        if "retryPolicy" in entry:
            configured |= {n.get("method", "") for n in entry["name"] if n["service"] == SERVICE}
    return IDEMPOTENT - configured


# -- models ---------------------------------------------------------------------------


class QueueEventKind(Enum):
    """What happened in a queue (WatchQueue)."""

    ENQUEUED = pb.QUEUE_EVENT_KIND_ENQUEUED
    LEASED = pb.QUEUE_EVENT_KIND_LEASED
    PROGRESS = pb.QUEUE_EVENT_KIND_PROGRESS
    COMPLETED = pb.QUEUE_EVENT_KIND_COMPLETED
    FAILED = pb.QUEUE_EVENT_KIND_FAILED
    DEAD = pb.QUEUE_EVENT_KIND_DEAD
    CANCELLED = pb.QUEUE_EVENT_KIND_CANCELLED
    READY = pb.QUEUE_EVENT_KIND_READY
    RELEASED = pb.QUEUE_EVENT_KIND_RELEASED
    CANCEL_REQUESTED = pb.QUEUE_EVENT_KIND_CANCEL_REQUESTED
    REMOVED = pb.QUEUE_EVENT_KIND_REMOVED
    PAUSED = pb.QUEUE_EVENT_KIND_PAUSED
    RESUMED = pb.QUEUE_EVENT_KIND_RESUMED
    UNSPECIFIED = pb.QUEUE_EVENT_KIND_UNSPECIFIED  # a kind newer than this SDK


class WorkerState(Enum):
    ACTIVE = pb.WORKER_STATE_ACTIVE  # holds leases
    IDLE = pb.WORKER_STATE_IDLE  # holds none, called Lease within the last minute
    GONE = pb.WORKER_STATE_GONE  # not seen for a minute, or its leases expired
    UNSPECIFIED = pb.WORKER_STATE_UNSPECIFIED


INT_SETTINGS = (
    "max_attempts",
    "priority",
    "keep_completed",
    "keep_dead",
    "event_history",
    "concurrency_limit",
)
RATE_SETTINGS = ("rate_limit", "key_rate_limit")


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` leases in any window of `period` (seconds or timedelta), in Redis
    time across every worker; limit in [1, 1,000,000], period in [10 ms, 24 h]."""

    limit: int
    period: Seconds

    def to_proto(self) -> pb.RateLimit:
        return pb.RateLimit(limit=self.limit, period=duration(self.period))

    @classmethod
    def from_proto(cls, r: pb.RateLimit) -> "RateLimit":
        return cls(r.limit, _seconds(r.period))


DURATION_SETTINGS = ("lease_duration", "execution_timeout", "completed_max_age", "dead_max_age")


@dataclass(frozen=True)
class QueueSettings:
    """A queue's settings; None leaves a field to the broker's default. Durations in
    seconds (or timedelta). Read back, durations are float seconds."""

    max_attempts: int | None = None
    backoff: Backoff | None = None
    lease_duration: Seconds | None = None
    execution_timeout: Seconds | None = None
    priority: int | None = None
    keep_completed: int | None = None
    completed_max_age: Seconds | None = None
    keep_dead: int | None = None
    dead_max_age: Seconds | None = None
    event_history: int | None = None
    concurrency_limit: int | None = None
    rate_limit: RateLimit | None = None
    key_rate_limit: RateLimit | None = None

    def fields_set(self) -> list[str]:
        """The names of the fields that are not None, in proto order. (A proto
        setting this SDK does not carry counts as None.)"""
        return [
            f.name
            for f in pb.QueueSettings.DESCRIPTOR.fields
            if getattr(self, f.name, None) is not None
        ]

    def to_proto(self) -> pb.QueueSettings:
        out = pb.QueueSettings()
        for name in INT_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                setattr(out, name, value)
        for name in DURATION_SETTINGS:
            value = getattr(self, name)
            if value is not None:
                getattr(out, name).CopyFrom(duration(value))
        if self.backoff is not None:
            out.backoff.CopyFrom(self.backoff.to_proto())
        for name in RATE_SETTINGS:
            rate = getattr(self, name)
            if rate is not None:
                getattr(out, name).CopyFrom(rate.to_proto())
        return out

    @classmethod
    def from_proto(cls, s: pb.QueueSettings) -> "QueueSettings":
        values: dict[str, Any] = {}
        for name in INT_SETTINGS:
            values[name] = getattr(s, name) if s.HasField(name) else None  # type: ignore[arg-type]
        for name in DURATION_SETTINGS:
            values[name] = _seconds(getattr(s, name)) if s.HasField(name) else None  # type: ignore[arg-type]
        values["backoff"] = backoff_from(s.backoff) if s.HasField("backoff") else None
        for name in RATE_SETTINGS:
            has = s.HasField(name)  # type: ignore[arg-type]
            values[name] = RateLimit.from_proto(getattr(s, name)) if has else None
        return cls(**values)


def backoff_from(b: job_pb2.BackoffPolicy) -> Backoff:
    kind = BackoffKind(b.kind) if b.kind else BackoffKind.EXPONENTIAL
    return Backoff(kind, _seconds(b.initial_delay), _seconds(b.max_delay), b.multiplier, b.jitter)


@dataclass(frozen=True)
class QueueCounts:
    scheduled: int = 0
    ready: int = 0
    active: int = 0
    completed: int = 0
    dead: int = 0
    cancelled: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return (
            self.scheduled + self.ready + self.active + self.completed + self.dead + self.cancelled
        ) + self.expired


@dataclass(frozen=True)
class QueueMinute:
    """Jobs finished in one minute: completed, failed attempts, gone dead."""

    start: datetime | None
    completed: int
    failed: int
    dead: int


@dataclass(frozen=True)
class QueueInfo:
    """A queue and what it holds. `settings` as stored, `effective_settings` with the
    broker's defaults filled in; `last_hour` (oldest minute first) only from get_queue."""

    name: str
    paused: bool
    settings: QueueSettings
    effective_settings: QueueSettings
    counts: QueueCounts
    oldest_ready_age: float | None  # seconds; None when nothing is ready
    completed_last_minute: int
    failed_last_minute: int
    workers: tuple[str, ...]
    last_hour: tuple[QueueMinute, ...] = ()


@dataclass(frozen=True)
class JobFilter:
    """Narrows a set of jobs; every field given must match. `header_key` alone matches
    any value of that header."""

    error_type: str = ""
    header_key: str = ""
    header_value: str = ""
    fingerprint: str = ""

    def to_proto(self) -> pb.JobFilter:
        return pb.JobFilter(
            error_type=self.error_type,
            header_key=self.header_key,
            header_value=self.header_value,
            error_fingerprint=self.fingerprint,
        )


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobInfo]
    next_page_token: str  # empty after the last page


@dataclass(frozen=True)
class DeadLetterGroup:
    """Dead jobs of a queue with the same error fingerprint."""

    fingerprint: str
    error_type: str
    message_template: str
    count: int
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    sample_job_id: str
    sample_message: str


@dataclass(frozen=True)
class DeadLetterGroupPage:
    groups: list[DeadLetterGroup]
    next_page_token: str


@dataclass(frozen=True)
class RedriveProgress:
    matched: int  # jobs the redrive matched when it started (limit applied)
    redriven: int  # sent back to ready so far
    done: bool


@dataclass(frozen=True)
class QueueEvent:
    """One event of a queue (watch_queue). `job_id` is empty and `state` None for
    queue-wide events (paused, resumed); `gap` says events before it were missed."""

    id: str
    kind: QueueEventKind
    job_id: str
    state: JobState | None
    attempt: int
    progress: Progress | None
    error: JobFailure | None
    at: datetime | None
    gap: bool = False


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    queues: tuple[str, ...]
    in_flight: int
    last_lease_at: datetime | None
    last_heartbeat_at: datetime | None
    state: WorkerState


def _seconds(d: Duration) -> float:
    return d.ToNanoseconds() / 1e9


def _when(ts: Timestamp, present: bool) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if present else None


def _enum(cls: type[Any], value: int) -> Any:
    try:
        return cls(value)
    except ValueError:
        return cls(0)


def queue_info(q: pb.Queue) -> QueueInfo:
    c = q.counts
    return QueueInfo(
        name=q.name,
        paused=q.paused,
        settings=QueueSettings.from_proto(q.settings),
        effective_settings=QueueSettings.from_proto(q.effective_settings),
        counts=QueueCounts(
            c.scheduled, c.ready, c.active, c.completed, c.dead, c.cancelled, expired=c.expired
        ),
        oldest_ready_age=_seconds(q.oldest_ready_age) if q.HasField("oldest_ready_age") else None,
        completed_last_minute=q.completed_last_minute,
        failed_last_minute=q.failed_last_minute,
        workers=tuple(q.workers),
        last_hour=tuple(
            QueueMinute(
                _when(m.start_time, m.HasField("start_time")), m.completed, m.failed, m.dead
            )
            for m in q.last_hour
        ),
    )


def dead_letter_group(g: pb.DeadLetterGroup) -> DeadLetterGroup:
    return DeadLetterGroup(
        fingerprint=g.fingerprint,
        error_type=g.error_type,
        message_template=g.message_template,
        count=g.count,
        first_seen_at=_when(g.first_seen_time, g.HasField("first_seen_time")),
        last_seen_at=_when(g.last_seen_time, g.HasField("last_seen_time")),
        sample_job_id=g.sample_job_id,
        sample_message=g.sample_message,
    )


def queue_event(e: pb.WatchQueueResponse) -> QueueEvent:
    error = None
    if e.HasField("error"):
        error = JobFailure(e.error.type, e.error.message, e.error.non_retryable)
    return QueueEvent(
        id=e.event_id,
        kind=_enum(QueueEventKind, e.kind),
        job_id=e.job_id,
        state=JobState(e.state) if e.state in JobState._value2member_map_ else None,
        attempt=e.attempt,
        progress=progress_from(e.progress) if e.HasField("progress") else None,
        error=error,
        at=_when(e.time, e.HasField("time")),
        gap=e.gap,
    )


def worker_info(w: pb.Worker) -> WorkerInfo:
    return WorkerInfo(
        id=w.worker_id,
        queues=tuple(w.queues),
        in_flight=w.in_flight,
        last_lease_at=_when(w.last_lease_time, w.HasField("last_lease_time")),
        last_heartbeat_at=_when(w.last_heartbeat_time, w.HasField("last_heartbeat_time")),
        state=_enum(WorkerState, w.state),
    )


# -- requests, shared by both clients -------------------------------------------------


def _filter(f: JobFilter | None) -> pb.JobFilter | None:
    return f.to_proto() if f is not None else None


def update_queue_request(
    queue: str,
    settings: QueueSettings | pb.QueueSettings | None,
    update_mask: Iterable[str] | None,
) -> pb.UpdateQueueRequest:
    if settings is None:
        settings = pb.QueueSettings()
    elif isinstance(settings, QueueSettings):
        settings = settings.to_proto()
    request = pb.UpdateQueueRequest(queue=queue, settings=settings)
    request.update_mask.paths.extend(update_mask or ())
    return request


def list_jobs_request(
    queue: str,
    state: JobState,
    *,
    newest_first: bool,
    page_size: int,
    page_token: str,
    filter: JobFilter | None,
    include_payloads: bool,
) -> pb.ListJobsRequest:
    return pb.ListJobsRequest(
        queue=queue,
        state=state.value,
        order=pb.LIST_ORDER_NEWEST_FIRST if newest_first else pb.LIST_ORDER_OLDEST_FIRST,
        page_size=page_size,
        page_token=page_token,
        filter=_filter(filter),
        include_payloads=include_payloads,
    )


def job_page(reply: pb.ListJobsResponse) -> JobPage:
    return JobPage([job_info(j) for j in reply.jobs], reply.next_page_token)


def group_page(reply: pb.ListDeadLetterGroupsResponse) -> DeadLetterGroupPage:
    return DeadLetterGroupPage([dead_letter_group(g) for g in reply.groups], reply.next_page_token)


def selection(
    queue: str, job_ids: Iterable[str], state: JobState | None, filter: JobFilter | None
) -> dict[str, Any]:
    """The fields shared by RetryJobsRequest and DeleteJobsRequest."""
    return {
        "queue": queue,
        "job_ids": list(job_ids),
        "state": state.value if state is not None else job_pb2.JOB_STATE_UNSPECIFIED,
        "filter": _filter(filter),
    }


def redrive_request(
    queue: str,
    fingerprint: str,
    filter: JobFilter | None,
    rate: float,
    dry_run: bool,
    limit: int,
) -> pb.RedriveDeadLettersRequest:
    return pb.RedriveDeadLettersRequest(
        queue=queue,
        fingerprint=fingerprint,
        filter=_filter(filter),
        rate=rate,
        dry_run=dry_run,
        limit=limit,
    )


def purge_request(
    queue: str, fingerprint: str, older_than: Seconds | None, all: bool, dry_run: bool
) -> pb.PurgeDeadLettersRequest:
    return pb.PurgeDeadLettersRequest(
        queue=queue,
        fingerprint=fingerprint,
        older_than=duration(older_than) if older_than is not None else None,
        all=all,
        dry_run=dry_run,
    )


def redrive_progress(m: pb.RedriveDeadLettersResponse) -> RedriveProgress:
    return RedriveProgress(m.matched, m.redriven, m.done)


# -- the asyncio client ---------------------------------------------------------------


class Admin:
    """Operates queues: `async with Admin(target) as admin:`, or
    `Admin.from_client(client)` to share a Client's channel (closing the Admin then
    leaves the channel to the Client).

    Every call raises a JobwireError subclass on failure: NotFound for an unknown queue
    or job, InvalidArgument naming each bad field, FailedPrecondition for a job in the
    wrong state or a busy queue, Unavailable. Reads, pause, resume and update_queue are
    retried on UNAVAILABLE; bulk changes are not (running one again finishes the rest)."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        options: ChannelOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._attach(Client(target, options=options, retry=retry), owns=True)

    def _attach(self, client: Client, *, owns: bool) -> None:
        self.client = client
        self.options = client.options
        self.retry = client.retry
        self._owns = owns
        # ScheduleService has no retry policy in the service config: the client retries.
        self._client_retried = client_retried(client.options.service_config) | SCHEDULE_IDEMPOTENT
        self.stub = rpc.AdminServiceStub(client.channel)
        self.schedules = Schedules(self._call, client.channel)

    @classmethod
    def from_client(cls, client: Client) -> "Admin":
        admin = cls.__new__(cls)
        admin._attach(client, owns=False)
        return admin

    async def __aenter__(self) -> "Admin":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns:
            await self.client.close()

    async def _call(self, name: str, method: Callable[..., Awaitable[T]], request: Any) -> T:
        return await self.client.call(method, request, idempotent=name in self._client_retried)

    # -- queues

    async def list_queues(self) -> list[QueueInfo]:
        reply = await self._call("ListQueues", self.stub.ListQueues, pb.ListQueuesRequest())
        return [queue_info(q) for q in reply.queues]

    async def get_queue(self, queue: str) -> QueueInfo:
        request = pb.GetQueueRequest(queue=queue)
        return queue_info((await self._call("GetQueue", self.stub.GetQueue, request)).queue)

    async def update_queue(
        self,
        queue: str,
        settings: QueueSettings | pb.QueueSettings | None = None,
        update_mask: Iterable[str] | None = None,
    ) -> QueueInfo:
        """Changes the fields named in `update_mask` (a name whose value is None goes
        back to the broker's default), or with no mask every field set in `settings`.
        Creates the queue if new. Returns the queue after the change."""
        request = update_queue_request(queue, settings, update_mask)
        reply = await self._call("UpdateQueue", self.stub.UpdateQueue, request)
        return queue_info(reply.queue)

    async def pause_queue(self, queue: str) -> None:
        await self._call("PauseQueue", self.stub.PauseQueue, pb.PauseQueueRequest(queue=queue))

    async def resume_queue(self, queue: str) -> None:
        request = pb.ResumeQueueRequest(queue=queue)
        await self._call("ResumeQueue", self.stub.ResumeQueue, request)

    async def drain_queue(self, queue: str) -> int:
        """Deletes every ready and scheduled job; returns how many."""
        request = pb.DrainQueueRequest(queue=queue)
        return (await self._call("DrainQueue", self.stub.DrainQueue, request)).deleted

    async def delete_queue(self, queue: str, *, force: bool = False) -> int:
        """Deletes the queue and all its jobs (FailedPrecondition QUEUE_BUSY while some
        are active, unless `force`); returns the jobs deleted."""
        request = pb.DeleteQueueRequest(queue=queue, force=force)
        return (await self._call("DeleteQueue", self.stub.DeleteQueue, request)).deleted

    # -- jobs

    async def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        newest_first: bool = False,
        page_size: int = 0,
        page_token: str = "",
        filter: JobFilter | None = None,
        include_payloads: bool = False,
    ) -> JobPage:
        """One page of the queue's jobs in `state`. With a filter a page may be short,
        even empty, while `next_page_token` is set: iter_jobs pages through them all."""
        request = list_jobs_request(
            queue,
            state,
            newest_first=newest_first,
            page_size=page_size,
            page_token=page_token,
            filter=filter,
            include_payloads=include_payloads,
        )
        return job_page(await self._call("ListJobs", self.stub.ListJobs, request))

    async def iter_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        newest_first: bool = False,
        page_size: int = 0,
        filter: JobFilter | None = None,
        include_payloads: bool = False,
        limit: int | None = None,
    ) -> AsyncIterator[JobInfo]:
        """Every job of the queue in `state` (at most `limit`), page after page. A job
        that stays in the state is listed exactly once, however others move."""
        token, seen = "", 0
        while True:
            page = await self.list_jobs(
                queue,
                state,
                newest_first=newest_first,
                page_size=page_size,
                page_token=token,
                filter=filter,
                include_payloads=include_payloads,
            )
            for job in page.jobs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            token = page.next_page_token
            if not token or (limit is not None and seen >= limit):
                return

    async def retry_jobs(
        self,
        queue: str,
        job_ids: Iterable[str] = (),
        *,
        state: JobState | None = None,
        filter: JobFilter | None = None,
    ) -> int:
        """Sends dead or cancelled jobs back to ready: the given ids (all or nothing), or
        every job in `state` matching `filter`. Returns how many."""
        request = pb.RetryJobsRequest(**selection(queue, job_ids, state, filter))
        return (await self._call("RetryJobs", self.stub.RetryJobs, request)).retried

    async def delete_jobs(
        self,
        queue: str,
        job_ids: Iterable[str] = (),
        *,
        state: JobState | None = None,
        filter: JobFilter | None = None,
    ) -> int:
        """Deletes jobs that are not active, by ids or by state and filter."""
        request = pb.DeleteJobsRequest(**selection(queue, job_ids, state, filter))
        return (await self._call("DeleteJobs", self.stub.DeleteJobs, request)).deleted

    async def promote_jobs(self, queue: str, job_ids: Iterable[str] = ()) -> int:
        """Makes scheduled jobs ready now: the given ids, or every scheduled job."""
        request = pb.PromoteJobsRequest(queue=queue, job_ids=list(job_ids))
        return (await self._call("PromoteJobs", self.stub.PromoteJobs, request)).promoted

    # -- dead letters

    async def list_dead_letter_groups(
        self, queue: str, *, page_size: int = 0, page_token: str = ""
    ) -> DeadLetterGroupPage:
        request = pb.ListDeadLetterGroupsRequest(
            queue=queue, page_size=page_size, page_token=page_token
        )
        reply = await self._call("ListDeadLetterGroups", self.stub.ListDeadLetterGroups, request)
        return group_page(reply)

    async def iter_dead_letter_groups(
        self, queue: str, *, page_size: int = 0
    ) -> AsyncIterator[DeadLetterGroup]:
        """Every dead-letter group of the queue, most recently seen first."""
        token = ""
        while True:
            page = await self.list_dead_letter_groups(queue, page_size=page_size, page_token=token)
            for group in page.groups:
                yield group
            token = page.next_page_token
            if not token:
                return

    async def redrive_dead_letters(
        self,
        queue: str,
        fingerprint: str = "",
        *,
        filter: JobFilter | None = None,
        rate: float = 0.0,
        dry_run: bool = False,
        limit: int = 0,
    ) -> AsyncIterator[RedriveProgress]:
        """Sends dead jobs (one group, those `filter` matches, or all) back to ready at
        most `rate` per second (0: as fast as batches go), yielding progress until a
        message with `done`. Leaving the loop early stops the redrive; jobs sent stay
        sent. Not resumed after a dropped stream: run it again for the rest."""
        request = redrive_request(queue, fingerprint, filter, rate, dry_run, limit)
        stream = self.stub.RedriveDeadLetters(
            request, metadata=grpc_metadata(self.options.metadata)
        )
        try:
            async for message in stream:
                yield redrive_progress(message)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        finally:
            stream.cancel()

    async def purge_dead_letters(
        self,
        queue: str,
        fingerprint: str = "",
        *,
        older_than: Seconds | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> int:
        """Deletes dead jobs: one group's, those dead longer than `older_than`, both, or
        with `all` every one. Returns how many (with `dry_run`, would be)."""
        request = purge_request(queue, fingerprint, older_than, all, dry_run)
        return (await self._call("PurgeDeadLetters", self.stub.PurgeDeadLetters, request)).purged

    # -- events and workers

    async def watch_queue(self, queue: str, after_event_id: str = "") -> AsyncIterator[QueueEvent]:
        """Every event of the queue, in order, from after `after_event_id` ("": from now
        on, "0": from the oldest kept). Runs until the caller stops; a dropped stream is
        reopened after the last event seen, so nothing is missed or repeated (an event
        with `gap` set says the broker had already trimmed some)."""
        last = after_event_id
        attempt = 0
        while True:
            stream = self.stub.WatchQueue(
                pb.WatchQueueRequest(queue=queue, after_event_id=last),
                metadata=grpc_metadata(self.options.metadata),
            )
            try:
                async for message in stream:
                    attempt = 0
                    event = queue_event(message)
                    last = event.id
                    yield event
                return
            except grpc.RpcError as err:
                error: JobwireError = error_from_rpc(err)
            finally:
                stream.cancel()
            if not isinstance(error, Unavailable) or attempt + 1 >= self.retry.attempts * 4:
                raise error
            await asyncio.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1

    async def list_workers(
        self, queue: str = "", *, include_gone: bool = False
    ) -> list[WorkerInfo]:
        """The workers seen in the last hour (of `queue`, or of every queue), by id."""
        request = pb.ListWorkersRequest(queue=queue, include_gone=include_gone)
        reply = await self._call("ListWorkers", self.stub.ListWorkers, request)
        return [worker_info(w) for w in reply.workers]


# -- the blocking client --------------------------------------------------------------


class SyncAdmin:
    """The blocking twin of Admin, on gRPC's sync channel: the same methods, with
    iterators instead of async iterators.

    with SyncAdmin("127.0.0.1:50051") as admin:
        admin.pause_queue("emails")
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        options: ChannelOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._attach(SyncClient(target, options=options, retry=retry), owns=True)

    def _attach(self, client: SyncClient, *, owns: bool) -> None:
        self.client = client
        self.options = client.options
        self.retry = client.retry
        self._owns = owns
        self._client_retried = client_retried(client.options.service_config) | SCHEDULE_IDEMPOTENT
        self.stub = rpc.AdminServiceStub(client.channel)
        self.schedules = SyncSchedules(self._call, client.channel)

    @classmethod
    def from_client(cls, client: SyncClient) -> "SyncAdmin":
        admin = cls.__new__(cls)
        admin._attach(client, owns=False)
        return admin

    def __enter__(self) -> "SyncAdmin":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns:
            self.client.close()

    def _call(self, name: str, method: Callable[..., T], request: Any) -> T:
        attempt = 0
        while True:
            try:
                return method(
                    request,
                    timeout=self.options.timeout_s,
                    metadata=tuple(grpc_metadata(self.options.metadata)),
                )
            except grpc.RpcError as err:
                error = error_from_rpc(err)
            if not (
                name in self._client_retried
                and isinstance(error, Unavailable)
                and attempt + 1 < self.retry.attempts
            ):
                raise error
            time.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1

    def list_queues(self) -> list[QueueInfo]:
        reply = self._call("ListQueues", self.stub.ListQueues, pb.ListQueuesRequest())
        return [queue_info(q) for q in reply.queues]

    def get_queue(self, queue: str) -> QueueInfo:
        request = pb.GetQueueRequest(queue=queue)
        return queue_info(self._call("GetQueue", self.stub.GetQueue, request).queue)

    def update_queue(
        self,
        queue: str,
        settings: QueueSettings | pb.QueueSettings | None = None,
        update_mask: Iterable[str] | None = None,
    ) -> QueueInfo:
        """As Admin.update_queue."""
        request = update_queue_request(queue, settings, update_mask)
        return queue_info(self._call("UpdateQueue", self.stub.UpdateQueue, request).queue)

    def pause_queue(self, queue: str) -> None:
        self._call("PauseQueue", self.stub.PauseQueue, pb.PauseQueueRequest(queue=queue))

    def resume_queue(self, queue: str) -> None:
        self._call("ResumeQueue", self.stub.ResumeQueue, pb.ResumeQueueRequest(queue=queue))

    def drain_queue(self, queue: str) -> int:
        request = pb.DrainQueueRequest(queue=queue)
        return self._call("DrainQueue", self.stub.DrainQueue, request).deleted

    def delete_queue(self, queue: str, *, force: bool = False) -> int:
        request = pb.DeleteQueueRequest(queue=queue, force=force)
        return self._call("DeleteQueue", self.stub.DeleteQueue, request).deleted

    def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        newest_first: bool = False,
        page_size: int = 0,
        page_token: str = "",
        filter: JobFilter | None = None,
        include_payloads: bool = False,
    ) -> JobPage:
        request = list_jobs_request(
            queue,
            state,
            newest_first=newest_first,
            page_size=page_size,
            page_token=page_token,
            filter=filter,
            include_payloads=include_payloads,
        )
        return job_page(self._call("ListJobs", self.stub.ListJobs, request))

    def iter_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        newest_first: bool = False,
        page_size: int = 0,
        filter: JobFilter | None = None,
        include_payloads: bool = False,
        limit: int | None = None,
    ) -> Iterator[JobInfo]:
        """As Admin.iter_jobs."""
        token, seen = "", 0
        while True:
            page = self.list_jobs(
                queue,
                state,
                newest_first=newest_first,
                page_size=page_size,
                page_token=token,
                filter=filter,
                include_payloads=include_payloads,
            )
            for job in page.jobs:
                if limit is not None and seen >= limit:
                    return
                seen += 1
                yield job
            token = page.next_page_token
            if not token or (limit is not None and seen >= limit):
                return

    def retry_jobs(
        self,
        queue: str,
        job_ids: Iterable[str] = (),
        *,
        state: JobState | None = None,
        filter: JobFilter | None = None,
    ) -> int:
        request = pb.RetryJobsRequest(**selection(queue, job_ids, state, filter))
        return self._call("RetryJobs", self.stub.RetryJobs, request).retried

    def delete_jobs(
        self,
        queue: str,
        job_ids: Iterable[str] = (),
        *,
        state: JobState | None = None,
        filter: JobFilter | None = None,
    ) -> int:
        request = pb.DeleteJobsRequest(**selection(queue, job_ids, state, filter))
        return self._call("DeleteJobs", self.stub.DeleteJobs, request).deleted

    def promote_jobs(self, queue: str, job_ids: Iterable[str] = ()) -> int:
        request = pb.PromoteJobsRequest(queue=queue, job_ids=list(job_ids))
        return self._call("PromoteJobs", self.stub.PromoteJobs, request).promoted

    def list_dead_letter_groups(
        self, queue: str, *, page_size: int = 0, page_token: str = ""
    ) -> DeadLetterGroupPage:
        request = pb.ListDeadLetterGroupsRequest(
            queue=queue, page_size=page_size, page_token=page_token
        )
        return group_page(
            self._call("ListDeadLetterGroups", self.stub.ListDeadLetterGroups, request)
        )

    def iter_dead_letter_groups(
        self, queue: str, *, page_size: int = 0
    ) -> Iterator[DeadLetterGroup]:
        token = ""
        while True:
            page = self.list_dead_letter_groups(queue, page_size=page_size, page_token=token)
            yield from page.groups
            token = page.next_page_token
            if not token:
                return

    def redrive_dead_letters(
        self,
        queue: str,
        fingerprint: str = "",
        *,
        filter: JobFilter | None = None,
        rate: float = 0.0,
        dry_run: bool = False,
        limit: int = 0,
    ) -> Iterator[RedriveProgress]:
        """As Admin.redrive_dead_letters; closing the iterator stops the redrive."""
        request = redrive_request(queue, fingerprint, filter, rate, dry_run, limit)
        stream = self.stub.RedriveDeadLetters(
            request, metadata=tuple(grpc_metadata(self.options.metadata))
        )
        try:
            for message in stream:
                yield redrive_progress(message)
        except grpc.RpcError as err:
            raise error_from_rpc(err) from None
        finally:
            cast("grpc.Future[Any]", stream).cancel()

    def purge_dead_letters(
        self,
        queue: str,
        fingerprint: str = "",
        *,
        older_than: Seconds | None = None,
        all: bool = False,
        dry_run: bool = False,
    ) -> int:
        request = purge_request(queue, fingerprint, older_than, all, dry_run)
        return self._call("PurgeDeadLetters", self.stub.PurgeDeadLetters, request).purged

    def watch_queue(self, queue: str, after_event_id: str = "") -> Iterator[QueueEvent]:
        """As Admin.watch_queue; closing the iterator ends the stream."""
        last = after_event_id
        attempt = 0
        while True:
            stream = self.stub.WatchQueue(
                pb.WatchQueueRequest(queue=queue, after_event_id=last),
                metadata=tuple(grpc_metadata(self.options.metadata)),
            )
            try:
                for message in stream:
                    attempt = 0
                    event = queue_event(message)
                    last = event.id
                    yield event
                return
            except grpc.RpcError as err:
                error: JobwireError = error_from_rpc(err)
            finally:
                cast("grpc.Future[Any]", stream).cancel()
            if not isinstance(error, Unavailable) or attempt + 1 >= self.retry.attempts * 4:
                raise error
            time.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1

    def list_workers(self, queue: str = "", *, include_gone: bool = False) -> list[WorkerInfo]:
        request = pb.ListWorkersRequest(queue=queue, include_gone=include_gone)
        return [
            worker_info(w)
            for w in self._call("ListWorkers", self.stub.ListWorkers, request).workers
        ]
