"""AdminService's queue RPCs: ListQueues, GetQueue, UpdateQueue, PauseQueue,
ResumeQueue, DrainQueue, DeleteQueue (see api/admin.py, which combines the parts)."""

from typing import Any, NamedTuple

import grpc
from jobwire.v1 import admin_service_pb2 as pb

from ..domain import queues
from ..domain.admin import AdminContext
from ..domain.limits import DAY_MS, SECOND_MS, Defaults, Limits
from ..domain.model import RATE_LIMIT_SETTINGS, QueueInfo, QueueSettings, RateLimit
from . import responses as out
from .errors import unary
from .requests import MAX_CONCURRENCY_LIMIT, Parser

Context = grpc.aio.ServicerContext[Any, Any]
# QueueSettings' proto field -> the domain's field.
FIELDS = {
    "max_attempts": "max_attempts",
    "backoff": "backoff",
    "lease_duration": "lease_ms",
    "execution_timeout": "timeout_ms",
    "priority": "priority",
    "keep_completed": "keep_completed",
    "completed_max_age": "completed_max_age_ms",
    "keep_dead": "keep_dead",
    "dead_max_age": "dead_max_age_ms",
    "event_history": "event_history",
    "concurrency_limit": "concurrency_limit",
    "rate_limit": "rate_limit",
    "key_rate_limit": "key_rate_limit",
}
DURATIONS = {"lease_duration", "execution_timeout", "completed_max_age", "dead_max_age"}
MAX_KEEP = 100_000_000
MAX_AGE_MS = 3_650 * DAY_MS
MAX_EVENT_HISTORY = 1_000_000
MAX_RATE = 1_000_000
RATE_PERIOD_MS = (10, DAY_MS)  # [10 ms, 24 h]


def parse_rate_limit(p: Parser, field: str, r: pb.RateLimit) -> RateLimit:
    p.in_range(f"{field}.limit", r.limit, 1, MAX_RATE)
    if not r.HasField("period"):
        p.bad(f"{field}.period", "is required")
        return RateLimit(r.limit, 0)
    return RateLimit(r.limit, p.duration_ms(f"{field}.period", r.period, *RATE_PERIOD_MS))


def parse_limits(p: Parser, field: str, s: pb.QueueSettings) -> dict[str, Any]:
    """The concurrency and rate limit settings given, range-checked."""
    values: dict[str, Any] = {}
    if s.HasField("concurrency_limit"):
        p.in_range(f"{field}.concurrency_limit", s.concurrency_limit, 1, MAX_CONCURRENCY_LIMIT)
        values["concurrency_limit"] = s.concurrency_limit
    for name in RATE_LIMIT_SETTINGS:
        if s.HasField(name):  # type: ignore[arg-type]
            values[name] = parse_rate_limit(p, f"{field}.{name}", getattr(s, name))
    return values


def rate_limit_message(r: RateLimit) -> pb.RateLimit:
    return pb.RateLimit(limit=r.limit, period=out.duration(r.period_ms))


def parse_settings(p: Parser, field: str, s: pb.QueueSettings) -> QueueSettings:
    """The settings given (set fields only), each checked against its documented range."""
    lim = p.limits
    values: dict[str, Any] = {}
    if s.HasField("max_attempts"):
        p.in_range(f"{field}.max_attempts", s.max_attempts, 1, lim.max_attempts)
        values["max_attempts"] = s.max_attempts
    if s.HasField("backoff"):
        values["backoff"] = p.backoff(f"{field}.backoff", s.backoff)
    if s.HasField("priority"):
        p.in_range(f"{field}.priority", s.priority, -lim.max_priority, lim.max_priority)
        values["priority"] = s.priority
    for name, high in (("keep_completed", MAX_KEEP), ("keep_dead", MAX_KEEP)):
        if s.HasField(name):  # type: ignore[arg-type]
            p.in_range(f"{field}.{name}", getattr(s, name), 0, high)
            values[name] = getattr(s, name)
    if s.HasField("event_history"):
        p.in_range(f"{field}.event_history", s.event_history, 0, MAX_EVENT_HISTORY)
        values["event_history"] = s.event_history
    values.update(parse_limits(p, field, s))
    ranges = {
        "lease_duration": (lim.min_lease_ms, lim.max_lease_ms),
        "execution_timeout": (SECOND_MS, lim.max_timeout_ms),
        "completed_max_age": (SECOND_MS, MAX_AGE_MS),
        "dead_max_age": (SECOND_MS, MAX_AGE_MS),
    }
    for name, (low, high) in ranges.items():
        if s.HasField(name):  # type: ignore[arg-type]
            values[FIELDS[name]] = p.duration_ms(f"{field}.{name}", getattr(s, name), low, high)
    return QueueSettings(**values)


class QueueUpdate(NamedTuple):
    queue: str
    values: QueueSettings
    fields: list[str]  # the domain's names of the fields to set or clear


def parse_update(limits: Limits, defaults: Defaults, request: pb.UpdateQueueRequest) -> QueueUpdate:
    """An UpdateQueueRequest checked; raises INVALID_ARGUMENT naming every bad field.
    An empty mask means the fields set in `settings`."""
    p = Parser(limits, defaults)
    queue = p.queue("queue", request.queue)
    values = parse_settings(p, "settings", request.settings)
    paths = list(request.update_mask.paths)
    for i, path in enumerate(paths):
        if path not in FIELDS:
            p.bad(f"update_mask.paths[{i}]", f"is not a QueueSettings field: {path!r}")
    if not paths:
        paths = [f for f in FIELDS if request.settings.HasField(f)]  # type: ignore[arg-type]
    p.done()
    return QueueUpdate(queue, values, [FIELDS[path] for path in paths])


def settings_message(s: QueueSettings) -> pb.QueueSettings:
    m = pb.QueueSettings()
    for proto, name in FIELDS.items():
        value = getattr(s, name)
        if value is None:
            continue
        if proto == "backoff":
            m.backoff.CopyFrom(out.backoff(value))
        elif proto in RATE_LIMIT_SETTINGS:
            getattr(m, proto).CopyFrom(rate_limit_message(value))
        elif proto in DURATIONS:
            getattr(m, proto).CopyFrom(out.duration(value))
        else:
            setattr(m, proto, value)
    return m


def queue_message(ctx: AdminContext, q: QueueInfo) -> pb.Queue:
    m = pb.Queue(
        name=q.name,
        paused=q.paused,
        settings=settings_message(q.settings),
        effective_settings=settings_message(queues.effective(ctx, q.settings)),
        counts=pb.QueueCounts(**{state.value: n for state, n in q.counts.items()}),
        completed_last_minute=q.completed_last_minute,
        failed_last_minute=q.failed_last_minute,
        workers=q.workers,
    )
    if q.oldest_ready_age_ms is not None:
        m.oldest_ready_age.CopyFrom(out.duration(q.oldest_ready_age_ms))
    for minute in q.last_hour:
        m.last_hour.add(
            start_time=out.timestamp(minute.start_ms),
            completed=minute.completed,
            failed=minute.failed,
            dead=minute.dead,
        )
    return m


class QueueRpcs:
    ctx: AdminContext
    limits: Limits
    defaults: Defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)

    def _queue(self, queue: str) -> str:
        p = self._parser()
        p.queue("queue", queue)
        p.done()
        return queue

    @unary
    async def ListQueues(
        self, request: pb.ListQueuesRequest, context: Context
    ) -> pb.ListQueuesResponse:
        found = await queues.list_queues(self.ctx)
        return pb.ListQueuesResponse(queues=[queue_message(self.ctx, q) for q in found])

    @unary
    async def GetQueue(self, request: pb.GetQueueRequest, context: Context) -> pb.GetQueueResponse:
        queue = self._queue(request.queue)
        return pb.GetQueueResponse(
            queue=queue_message(self.ctx, await queues.get_queue(self.ctx, queue))
        )

    @unary
    async def UpdateQueue(
        self, request: pb.UpdateQueueRequest, context: Context
    ) -> pb.UpdateQueueResponse:
        change = parse_update(self.limits, self.defaults, request)
        found = await queues.update_queue(self.ctx, change.queue, change.values, change.fields)
        return pb.UpdateQueueResponse(queue=queue_message(self.ctx, found))

    @unary
    async def PauseQueue(
        self, request: pb.PauseQueueRequest, context: Context
    ) -> pb.PauseQueueResponse:
        await queues.set_paused(self.ctx, self._queue(request.queue), True)
        return pb.PauseQueueResponse()

    @unary
    async def ResumeQueue(
        self, request: pb.ResumeQueueRequest, context: Context
    ) -> pb.ResumeQueueResponse:
        await queues.set_paused(self.ctx, self._queue(request.queue), False)
        return pb.ResumeQueueResponse()

    @unary
    async def DrainQueue(
        self, request: pb.DrainQueueRequest, context: Context
    ) -> pb.DrainQueueResponse:
        deleted = await queues.drain_queue(self.ctx, self._queue(request.queue))
        return pb.DrainQueueResponse(deleted=deleted)

    @unary
    async def DeleteQueue(
        self, request: pb.DeleteQueueRequest, context: Context
    ) -> pb.DeleteQueueResponse:
        queue = self._queue(request.queue)
        return pb.DeleteQueueResponse(
            deleted=await queues.delete_queue(self.ctx, queue, request.force)
        )
