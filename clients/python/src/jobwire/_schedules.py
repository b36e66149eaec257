"""Schedules (jobwire.v1.ScheduleService): jobs enqueued on a cron or a fixed interval,
reached as `admin.schedules` of an Admin (async) or a SyncAdmin (blocking)."""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar

from google.protobuf.field_mask_pb2 import FieldMask

from ._models import Seconds, duration
from .v1 import job_pb2
from .v1 import schedule_service_pb2 as pb
from .v1 import schedule_service_pb2_grpc as rpc

T = TypeVar("T")
# Calls that may run twice with the same effect, retried on UNAVAILABLE.
IDEMPOTENT = frozenset(
    {"GetSchedule", "ListSchedules", "UpdateSchedule", "PauseSchedule", "ResumeSchedule"}
)
# Schedule fields update() may name.
FIELDS = (
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


class OverlapPolicy(Enum):
    """What a tick does while the job the last tick fired has not finished."""

    ALLOW = pb.OVERLAP_POLICY_ALLOW
    SKIP = pb.OVERLAP_POLICY_SKIP


class CatchUpPolicy(Enum):
    """What happens to ticks missed while no broker could fire them."""

    SKIP = pb.CATCH_UP_POLICY_SKIP
    ONE = pb.CATCH_UP_POLICY_ONE
    ALL = pb.CATCH_UP_POLICY_ALL


@dataclass(frozen=True)
class Schedule:
    """A schedule: exactly one of `cron` (in `time_zone`, "" for UTC) and `interval`
    (seconds or timedelta); `job` is the JobSpec each tick enqueues (see job_spec()).
    The fields after `catch_up_limit` are the broker's, filled in when read back."""

    name: str
    queue: str
    job: job_pb2.JobSpec = field(default_factory=job_pb2.JobSpec)
    cron: str = ""
    time_zone: str = ""
    interval: Seconds | None = None
    start_within: Seconds | None = None
    overlap: OverlapPolicy = OverlapPolicy.ALLOW
    catch_up: CatchUpPolicy = CatchUpPolicy.ONE
    catch_up_limit: int = 0
    paused: bool = False
    next_run_times: list[datetime] = field(default_factory=list)
    last_tick_time: datetime | None = None
    last_job_id: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def to_proto(self) -> pb.Schedule:
        m = pb.Schedule(
            name=self.name,
            queue=self.queue,
            job=self.job,
            cron=self.cron,
            time_zone=self.time_zone,
            overlap=self.overlap.value,
            catch_up=self.catch_up.value,
            catch_up_limit=self.catch_up_limit,
        )
        if self.interval is not None:
            m.interval.CopyFrom(duration(self.interval))
        if self.start_within is not None:
            m.start_within.CopyFrom(duration(self.start_within))
        return m

    @classmethod
    def from_proto(cls, m: pb.Schedule) -> "Schedule":
        def when(name: str) -> datetime | None:
            return getattr(m, name).ToDatetime(tzinfo=UTC) if m.HasField(name) else None  # type: ignore[arg-type]

        return cls(
            name=m.name,
            queue=m.queue,
            job=m.job,
            cron=m.cron,
            time_zone=m.time_zone,
            interval=m.interval.ToTimedelta().total_seconds() if m.HasField("interval") else None,
            start_within=m.start_within.ToTimedelta().total_seconds()
            if m.HasField("start_within")
            else None,
            overlap=OverlapPolicy(m.overlap or pb.OVERLAP_POLICY_ALLOW),
            catch_up=CatchUpPolicy(m.catch_up or pb.CATCH_UP_POLICY_ONE),
            catch_up_limit=m.catch_up_limit,
            paused=m.paused,
            next_run_times=[t.ToDatetime(tzinfo=UTC) for t in m.next_run_times],
            last_tick_time=when("last_tick_time"),
            last_job_id=m.last_job_id,
            created_at=when("create_time"),
            updated_at=when("update_time"),
        )


def _update(schedule: Schedule, fields: Sequence[str] | None) -> pb.UpdateScheduleRequest:
    """Without `fields`, every field of the schedule is replaced (a full update)."""
    paths = list(fields) if fields is not None else list(FIELDS)
    return pb.UpdateScheduleRequest(
        schedule=schedule.to_proto(), update_mask=FieldMask(paths=paths)
    )


class Schedules:
    """The async schedule calls, as `Admin.schedules`. Each raises a JobwireError
    subclass: InvalidArgument naming each bad field, NotFound for an unknown schedule,
    and the ALREADY_EXISTS error for a name taken."""

    def __init__(
        self,
        call: Callable[[str, Callable[..., Awaitable[Any]], Any], Awaitable[Any]],
        channel: Any,
    ) -> None:
        self._call = call
        self.stub = rpc.ScheduleServiceStub(channel)

    async def create(self, schedule: Schedule) -> Schedule:
        request = pb.CreateScheduleRequest(schedule=schedule.to_proto())
        reply = await self._call("CreateSchedule", self.stub.CreateSchedule, request)
        return Schedule.from_proto(reply.schedule)

    async def update(self, schedule: Schedule, fields: Sequence[str] | None = None) -> Schedule:
        """Changes the schedule named `schedule.name`: the `fields` named, else all."""
        request = _update(schedule, fields)
        reply = await self._call("UpdateSchedule", self.stub.UpdateSchedule, request)
        return Schedule.from_proto(reply.schedule)

    async def delete(self, name: str) -> None:
        request = pb.DeleteScheduleRequest(name=name)
        await self._call("DeleteSchedule", self.stub.DeleteSchedule, request)

    async def pause(self, name: str) -> Schedule:
        request = pb.PauseScheduleRequest(name=name)
        reply = await self._call("PauseSchedule", self.stub.PauseSchedule, request)
        return Schedule.from_proto(reply.schedule)

    async def resume(self, name: str) -> Schedule:
        request = pb.ResumeScheduleRequest(name=name)
        reply = await self._call("ResumeSchedule", self.stub.ResumeSchedule, request)
        return Schedule.from_proto(reply.schedule)

    async def get(self, name: str) -> Schedule:
        request = pb.GetScheduleRequest(name=name)
        reply = await self._call("GetSchedule", self.stub.GetSchedule, request)
        return Schedule.from_proto(reply.schedule)

    async def list(self, queue: str = "") -> list[Schedule]:
        request = pb.ListSchedulesRequest(queue=queue)
        reply = await self._call("ListSchedules", self.stub.ListSchedules, request)
        return [Schedule.from_proto(s) for s in reply.schedules]


class SyncSchedules:
    """The blocking twin of Schedules, as `SyncAdmin.schedules`."""

    def __init__(self, call: Callable[[str, Callable[..., Any], Any], Any], channel: Any) -> None:
        self._call = call
        self.stub = rpc.ScheduleServiceStub(channel)

    def create(self, schedule: Schedule) -> Schedule:
        request = pb.CreateScheduleRequest(schedule=schedule.to_proto())
        return Schedule.from_proto(
            self._call("CreateSchedule", self.stub.CreateSchedule, request).schedule
        )

    def update(self, schedule: Schedule, fields: Sequence[str] | None = None) -> Schedule:
        request = _update(schedule, fields)
        return Schedule.from_proto(
            self._call("UpdateSchedule", self.stub.UpdateSchedule, request).schedule
        )

    def delete(self, name: str) -> None:
        self._call("DeleteSchedule", self.stub.DeleteSchedule, pb.DeleteScheduleRequest(name=name))

    def pause(self, name: str) -> Schedule:
        request = pb.PauseScheduleRequest(name=name)
        return Schedule.from_proto(
            self._call("PauseSchedule", self.stub.PauseSchedule, request).schedule
        )

    def resume(self, name: str) -> Schedule:
        request = pb.ResumeScheduleRequest(name=name)
        return Schedule.from_proto(
            self._call("ResumeSchedule", self.stub.ResumeSchedule, request).schedule
        )

    def get(self, name: str) -> Schedule:
        request = pb.GetScheduleRequest(name=name)
        return Schedule.from_proto(
            self._call("GetSchedule", self.stub.GetSchedule, request).schedule
        )

    def list(self, queue: str = "") -> list[Schedule]:
        request = pb.ListSchedulesRequest(queue=queue)
        reply = self._call("ListSchedules", self.stub.ListSchedules, request)
        return [Schedule.from_proto(s) for s in reply.schedules]
