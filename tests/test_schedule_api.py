"""ScheduleService over real gRPC: each RPC as its proto documents it, bad input refused
whole with nothing written, and a schedule firing on the broker's own ticker."""

import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.timestamp_pb2 import Timestamp
from jobwire.v1 import job_pb2
from jobwire.v1 import schedule_service_pb2 as pb
from jobwire.v1 import schedule_service_pb2_grpc as srpc
from jobwire_broker.server import BrokerApp
from jobwire_broker.store import schema
from redis.asyncio import Redis
from support import eventually
from test_bad_input import call_error, rejected

Q = "sched"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def api(broker: BrokerApp) -> AsyncIterator[srpc.ScheduleServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield srpc.ScheduleServiceStub(channel)


def schedule(name: str = "nightly", **kwargs: Any) -> pb.Schedule:
    values: dict[str, Any] = {
        "name": name,
        "queue": Q,
        "job": job_pb2.JobSpec(payload=b"p", headers={"team": "ops"}),
        **kwargs,
    }
    if "cron" not in values and "interval" not in values:
        values["cron"] = "0 3 * * *"
    return pb.Schedule(**values)


async def create(api: srpc.ScheduleServiceStub, **kwargs: Any) -> pb.Schedule:
    r = await api.CreateSchedule(pb.CreateScheduleRequest(schedule=schedule(**kwargs)))
    return r.schedule


async def test_create_get_list_update_pause_delete(api: srpc.ScheduleServiceStub) -> None:
    made = await create(api, time_zone="Europe/Berlin", overlap=pb.OVERLAP_POLICY_SKIP)
    assert made.name == "nightly" and made.queue == Q and not made.paused
    assert len(made.next_run_times) == 5
    assert {t.ToDatetime().hour for t in made.next_run_times} <= {1, 2}  # 03:00 Berlin
    assert made.catch_up == pb.CATCH_UP_POLICY_ONE and made.catch_up_limit == 100
    assert made.job.headers["team"] == "ops" and made.job.payload == b"p"
    assert not made.HasField("last_tick_time") and made.last_job_id == ""
    got = (await api.GetSchedule(pb.GetScheduleRequest(name="nightly"))).schedule
    assert got == made
    await create(api, name="other", interval=Duration(seconds=60), queue="elsewhere")
    listed = (await api.ListSchedules(pb.ListSchedulesRequest())).schedules
    assert [s.name for s in listed] == ["nightly", "other"]
    only = (await api.ListSchedules(pb.ListSchedulesRequest(queue="elsewhere"))).schedules
    assert [s.name for s in only] == ["other"]

    changed = (
        await api.UpdateSchedule(
            pb.UpdateScheduleRequest(
                schedule=pb.Schedule(name="nightly", interval=Duration(seconds=3600)),
                update_mask=FieldMask(paths=["interval"]),
            )
        )
    ).schedule
    assert changed.cron == "" and changed.time_zone == ""
    assert changed.interval.seconds == 3600 and changed.overlap == pb.OVERLAP_POLICY_SKIP
    # An empty mask: the fields set.
    changed = (
        await api.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=pb.Schedule(name="nightly", catch_up_limit=7))
        )
    ).schedule
    assert changed.catch_up_limit == 7 and changed.interval.seconds == 3600

    paused = (await api.PauseSchedule(pb.PauseScheduleRequest(name="nightly"))).schedule
    assert paused.paused and list(paused.next_run_times) == []
    again = (await api.PauseSchedule(pb.PauseScheduleRequest(name="nightly"))).schedule
    assert again == paused
    resumed = (await api.ResumeSchedule(pb.ResumeScheduleRequest(name="nightly"))).schedule
    assert not resumed.paused and len(resumed.next_run_times) == 5

    await api.DeleteSchedule(pb.DeleteScheduleRequest(name="nightly"))
    err = await call_error(api.GetSchedule(pb.GetScheduleRequest(name="nightly")))
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")


async def test_fires_within_a_second(
    api: srpc.ScheduleServiceStub, redis: Redis, broker: BrokerApp
) -> None:
    """On the broker's own ticker and Redis time: an every-second schedule's jobs come
    with both headers, each enqueued within a second of its tick."""
    await create(api, name="every-second", cron="* * * * * *")
    prefix = broker.settings.key_prefix
    ready = f"{prefix}:{{{Q}}}:ready"

    async def three() -> bool:
        return int(await redis.zcard(ready)) >= 3

    await eventually(three, timeout_s=10)
    await api.PauseSchedule(pb.PauseScheduleRequest(name="every-second"))
    late = []
    for seq in await redis.zrange(ready, 0, -1):
        job = schema.job(Q, await redis.hgetall(f"{prefix}:{{{Q}}}:job:{seq.decode()}"))
        assert job.headers["jobwire-schedule"] == "every-second"
        tick = Timestamp()
        tick.FromJsonString(job.headers["jobwire-schedule-time"])
        assert job.headers["jobwire-schedule-time"].endswith("Z")
        late.append(job.created_ms - tick.ToMilliseconds())
    assert all(0 <= ms < 1_000 for ms in late), late
    got = (await api.GetSchedule(pb.GetScheduleRequest(name="every-second"))).schedule
    assert got.last_job_id and got.HasField("last_tick_time")
    assert abs(got.last_tick_time.ToMilliseconds() - time.time() * 1000) < 10_000


def D(seconds: int = 0, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


BAD_SCHEDULES = [
    ({"cron": "61 * * * *"}, ["schedule.cron"]),
    ({"cron": "not cron"}, ["schedule.cron"]),
    ({"cron": "@sometimes"}, ["schedule.cron"]),
    ({"time_zone": "Mars/Olympus"}, ["schedule.time_zone"]),
    ({"cron": "", "interval": D(60), "time_zone": "Europe/Berlin"}, ["schedule.time_zone"]),
    ({"cron": "* * * * *", "interval": D(60)}, ["schedule.cron"]),  # both
    ({"cron": ""}, ["schedule.cron"]),  # neither
    ({"cron": "", "interval": D(0, 999_999_999)}, ["schedule.interval"]),
    ({"cron": "", "interval": D(366 * 86_400 + 1)}, ["schedule.interval"]),
    ({"cron": "", "interval": D(-1)}, ["schedule.interval"]),
    ({"start_within": D(0)}, ["schedule.start_within"]),
    ({"catch_up_limit": 1001}, ["schedule.catch_up_limit"]),
    ({"catch_up_limit": -1}, ["schedule.catch_up_limit"]),
    ({"overlap": 7}, ["schedule.overlap"]),
    ({"catch_up": 9}, ["schedule.catch_up"]),
    ({"name": ""}, ["schedule.name"]),
    ({"name": "-leading"}, ["schedule.name"]),
    ({"name": "x" * 129}, ["schedule.name"]),
    ({"name": "sp ace"}, ["schedule.name"]),
    ({"queue": ""}, ["schedule.queue"]),
    ({"job": job_pb2.JobSpec(idempotency_key="k")}, ["schedule.job.idempotency_key"]),
    ({"job": job_pb2.JobSpec(depends_on=["q:1"])}, ["schedule.job.depends_on"]),
    (
        {"job": job_pb2.JobSpec(start_deadline=Timestamp(seconds=1))},
        ["schedule.job.start_deadline"],
    ),
    ({"job": job_pb2.JobSpec(priority=10_000)}, ["schedule.job.priority"]),
    (
        {"name": "", "cron": "bad", "time_zone": "Nowhere/Else"},
        ["schedule.name", "schedule.cron", "schedule.time_zone"],
    ),
]


@pytest.mark.parametrize(("fields", "bad"), BAD_SCHEDULES)
async def test_bad_schedules_write_nothing(
    api: srpc.ScheduleServiceStub,
    redis: Redis,
    broker: BrokerApp,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    prefix = broker.settings.key_prefix
    await create(api, name="seed")
    await rejected(
        redis,
        prefix,
        lambda: api.CreateSchedule(
            pb.CreateScheduleRequest(schedule=schedule(**{"name": "fresh", **fields}))
        ),
        INVALID,
        "INVALID_ARGUMENT",
        bad,
    )
    if "name" not in fields and all(fields.values()):
        # The same values through UpdateSchedule (whose empty mask skips empty values).
        update = schedule(name="seed", **fields)
        await rejected(
            redis,
            prefix,
            lambda: api.UpdateSchedule(pb.UpdateScheduleRequest(schedule=update)),
            INVALID,
            "INVALID_ARGUMENT",
            bad,
        )


async def test_unknown_and_duplicate_schedules(
    api: srpc.ScheduleServiceStub, redis: Redis, broker: BrokerApp
) -> None:
    prefix = broker.settings.key_prefix
    await create(api, name="seed")
    NF = grpc.StatusCode.NOT_FOUND
    for call in (
        lambda: api.GetSchedule(pb.GetScheduleRequest(name="ghost")),
        lambda: api.PauseSchedule(pb.PauseScheduleRequest(name="ghost")),
        lambda: api.ResumeSchedule(pb.ResumeScheduleRequest(name="ghost")),
        lambda: api.DeleteSchedule(pb.DeleteScheduleRequest(name="ghost")),
        lambda: api.UpdateSchedule(
            pb.UpdateScheduleRequest(schedule=pb.Schedule(name="ghost", catch_up_limit=3))
        ),
    ):
        await rejected(redis, prefix, call, NF, "SCHEDULE_NOT_FOUND")
    for queue in (Q, "another-queue"):  # the name is unique across queues
        await rejected(
            redis,
            prefix,
            lambda q=queue: api.CreateSchedule(  # type: ignore[misc]
                pb.CreateScheduleRequest(schedule=schedule(name="seed", queue=q))
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "SCHEDULE_EXISTS",
        )
    for path, field in (("name", "update_mask.paths[0]"), ("paused", "update_mask.paths[0]")):
        await rejected(
            redis,
            prefix,
            lambda p=path: api.UpdateSchedule(  # type: ignore[misc]
                pb.UpdateScheduleRequest(
                    schedule=pb.Schedule(name="seed"), update_mask=FieldMask(paths=[p])
                )
            ),
            INVALID,
            "INVALID_ARGUMENT",
            [field],
        )
    await rejected(
        redis,
        prefix,
        lambda: api.GetSchedule(pb.GetScheduleRequest(name="")),
        INVALID,
        "INVALID_ARGUMENT",
        ["name"],
    )
