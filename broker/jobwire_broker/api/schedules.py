"""ScheduleService: requests checked and turned into domain schedules, and back."""

import re
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import job_pb2
from jobwire.v1 import schedule_service_pb2 as pb
from jobwire.v1 import schedule_service_pb2_grpc as rpc

from ..domain import schedule_times as times
from ..domain import schedules
from ..domain.admin import AdminContext
from ..domain.limits import DAY_MS, SECOND_MS, Defaults, Limits
from ..domain.model import NewJob
from ..domain.schedule_model import (
    DEFAULT_CATCH_UP_LIMIT,
    CatchUp,
    Overlap,
    ScheduleRecord,
    ScheduleSpec,
)
from . import responses as out
from .errors import unary
from .requests import Parser

Context = grpc.aio.ServicerContext[Any, Any]
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}", re.ASCII)
MAX_MS = 366 * DAY_MS
MAX_CATCH_UP_LIMIT = 1_000
# Schedule fields an update may name.
UPDATABLE = (
    "cron",
    "time_zone",
    "interval",
    "queue",
    "job",
    "start_within",
    "overlap",
    "catch_up",
    "catch_up_limit",
)
MESSAGES = {"interval", "job", "start_within"}


def name(p: Parser, field: str, value: str) -> str:
    if not NAME_RE.fullmatch(value):
        p.bad(field, "must be 1-128 of A-Z a-z 0-9 _ - . :, starting with a letter or digit")
    return value


def _duration(p: Parser, field: str, d: Duration) -> int:
    return p.duration_ms(field, d, SECOND_MS, MAX_MS)


def parse_schedule(p: Parser, s: pb.Schedule, field: str = "schedule") -> ScheduleSpec:
    """A Schedule's settable fields, checked; output-only fields are ignored."""
    has_interval = s.HasField("interval")
    if bool(s.cron) == has_interval:
        p.bad(f"{field}.cron", "exactly one of cron and interval must be set")
    if s.cron:
        problem = times.cron_problem(s.cron)
        if problem:
            p.bad(f"{field}.cron", problem)
    if times.zone(s.time_zone) is None:
        p.bad(f"{field}.time_zone", f"is not a known IANA time zone: {s.time_zone!r}")
    elif s.time_zone and not s.cron:
        p.bad(f"{field}.time_zone", "applies only with cron")
    interval = _duration(p, f"{field}.interval", s.interval) if has_interval else 0
    within = (
        _duration(p, f"{field}.start_within", s.start_within) if s.HasField("start_within") else 0
    )
    p.queue(f"{field}.queue", s.queue)
    job = _template(p, f"{field}.job", s)
    overlap = Overlap.ALLOW
    if s.overlap:
        if s.overlap not in {o.value for o in Overlap}:
            p.bad(f"{field}.overlap", f"is not a known OverlapPolicy: {s.overlap}")
        else:
            overlap = Overlap(s.overlap)
    catch_up = CatchUp.ONE
    if s.catch_up:
        if s.catch_up not in {c.value for c in CatchUp}:
            p.bad(f"{field}.catch_up", f"is not a known CatchUpPolicy: {s.catch_up}")
        else:
            catch_up = CatchUp(s.catch_up)
    limit = s.catch_up_limit or DEFAULT_CATCH_UP_LIMIT
    p.in_range(f"{field}.catch_up_limit", limit, 1, MAX_CATCH_UP_LIMIT)
    return ScheduleSpec(
        name=name(p, f"{field}.name", s.name),
        queue=s.queue,
        job=job,
        cron=s.cron,
        time_zone=s.time_zone if s.cron else "",
        interval_ms=interval,
        start_within_ms=within,
        overlap=overlap,
        catch_up=catch_up,
        catch_up_limit=limit,
    )


def _template(p: Parser, field: str, s: pb.Schedule) -> NewJob:
    spec = s.job
    if spec.idempotency_key:
        p.bad(f"{field}.idempotency_key", "must be empty: a tick is idempotent by its time")
    if spec.depends_on:
        p.bad(f"{field}.depends_on", "must be empty in a schedule's job")
    if spec.HasField("start_deadline"):
        p.bad(f"{field}.start_deadline", "must be empty: use the schedule's start_within")
    if spec.HasField("run_time"):
        p.bad(f"{field}.run_time", "must be empty in a schedule's job: use delay")
    return p.new_job(field, spec)


def template_message(job: NewJob) -> job_pb2.JobSpec:
    m = job_pb2.JobSpec(
        payload=job.payload,
        content_type=job.content_type,
        headers=dict(job.headers),
        priority=job.priority or 0,
        max_attempts=job.max_attempts or 0,
        trace_context=job_pb2.TraceContext(
            traceparent=job.trace.traceparent,
            tracestate=job.trace.tracestate,
            baggage=job.trace.baggage,
        ),
    )
    if job.delay_ms:
        m.delay.CopyFrom(out.duration(job.delay_ms))
    if job.backoff is not None:
        m.backoff.CopyFrom(out.backoff(job.backoff))
    if job.lease_ms:
        m.lease_duration.CopyFrom(out.duration(job.lease_ms))
    if job.timeout_ms:
        m.execution_timeout.CopyFrom(out.duration(job.timeout_ms))
    return m


def schedule_message(r: ScheduleRecord) -> pb.Schedule:
    s = r.spec
    m = pb.Schedule(
        name=s.name,
        cron=s.cron,
        time_zone=s.time_zone,
        queue=s.queue,
        job=template_message(s.job),
        overlap=pb.OverlapPolicy.ValueType(s.overlap.value),
        catch_up=pb.CatchUpPolicy.ValueType(s.catch_up.value),
        catch_up_limit=s.catch_up_limit,
        paused=r.paused,
        next_run_times=[out.timestamp(t) for t in r.next_run_ms],
        last_job_id=r.last_job_id,
        create_time=out.timestamp(r.create_ms),
        update_time=out.timestamp(r.update_ms),
    )
    if s.interval_ms:
        m.interval.CopyFrom(out.duration(s.interval_ms))
    if s.start_within_ms:
        m.start_within.CopyFrom(out.duration(s.start_within_ms))
    if r.last_tick_ms:
        m.last_tick_time.CopyFrom(out.timestamp(r.last_tick_ms))
    return m


def _is_set(s: pb.Schedule, field: str) -> bool:
    if field in MESSAGES:
        return s.HasField(field)  # type: ignore[arg-type]
    return bool(getattr(s, field))


class ScheduleServicer(rpc.ScheduleServiceServicer):
    def __init__(self, ctx: AdminContext, limits: Limits, defaults: Defaults) -> None:
        self.store = ctx.store
        self.limits = limits
        self.defaults = defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)

    def _name(self, value: str) -> str:
        p = self._parser()
        name(p, "name", value)
        p.done()
        return value

    @unary
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: Context
    ) -> pb.CreateScheduleResponse:
        p = self._parser()
        spec = parse_schedule(p, request.schedule)
        p.done()
        rec = await schedules.create_schedule(self.store, spec)
        return pb.CreateScheduleResponse(schedule=schedule_message(rec))

    @unary
    async def UpdateSchedule(
        self, request: pb.UpdateScheduleRequest, context: Context
    ) -> pb.UpdateScheduleResponse:
        p = self._parser()
        new = request.schedule
        name(p, "schedule.name", new.name)
        paths = list(request.update_mask.paths)
        for i, path in enumerate(paths):
            if path not in UPDATABLE:
                p.bad(f"update_mask.paths[{i}]", f"is not a Schedule field one can set: {path!r}")
        p.done()
        if not paths:
            paths = [f for f in UPDATABLE if _is_set(new, f)]
        merged = schedule_message(await schedules.get_schedule(self.store, new.name))
        for path in paths:
            if path in MESSAGES:
                merged.ClearField(path)  # type: ignore[arg-type]
                if new.HasField(path):  # type: ignore[arg-type]
                    getattr(merged, path).CopyFrom(getattr(new, path))
            else:
                setattr(merged, path, getattr(new, path))
        if "interval" in paths and new.HasField("interval") and "cron" not in paths:
            merged.cron = ""
            if "time_zone" not in paths:
                merged.time_zone = ""
        if "cron" in paths and new.cron and "interval" not in paths:
            merged.ClearField("interval")
        spec = parse_schedule(p, merged)
        p.done()
        rec = await schedules.update_schedule(self.store, spec)
        return pb.UpdateScheduleResponse(schedule=schedule_message(rec))

    @unary
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: Context
    ) -> pb.DeleteScheduleResponse:
        await schedules.delete_schedule(self.store, self._name(request.name))
        return pb.DeleteScheduleResponse()

    @unary
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: Context
    ) -> pb.PauseScheduleResponse:
        rec = await schedules.set_paused(self.store, self._name(request.name), True)
        return pb.PauseScheduleResponse(schedule=schedule_message(rec))

    @unary
    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: Context
    ) -> pb.ResumeScheduleResponse:
        rec = await schedules.set_paused(self.store, self._name(request.name), False)
        return pb.ResumeScheduleResponse(schedule=schedule_message(rec))

    @unary
    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: Context
    ) -> pb.GetScheduleResponse:
        rec = await schedules.get_schedule(self.store, self._name(request.name))
        return pb.GetScheduleResponse(schedule=schedule_message(rec))

    @unary
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: Context
    ) -> pb.ListSchedulesResponse:
        if request.queue:
            p = self._parser()
            p.queue("queue", request.queue)
            p.done()
        found = await schedules.list_schedules(self.store, request.queue)
        return pb.ListSchedulesResponse(schedules=[schedule_message(r) for r in found])
