"""AdminService's queue RPCs against a real broker and Valkey: settings that apply to
new jobs (through every replica), retention, pause and resume (long-polls included),
drain and delete, and the bad requests that must write nothing."""

import asyncio
import re
import time
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.maintenance import MaintenanceSettings
from jobwire_broker.domain.queues import DEFAULT_EVENT_HISTORY
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import RedisServer, broker_settings, eventually, running_broker
from test_bad_input import rejected

Q = "tuned"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


def tuned() -> apb.QueueSettings:
    return apb.QueueSettings(
        max_attempts=7,
        backoff=job_pb2.BackoffPolicy(
            kind=job_pb2.BACKOFF_KIND_FIXED, initial_delay={"seconds": 5}
        ),
        lease_duration={"seconds": 90},
        execution_timeout={"seconds": 600},
        priority=5,
    )


async def enqueue(stub: rpc.BrokerServiceStub, spec: job_pb2.JobSpec) -> job_pb2.Job:
    reply = await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=spec))
    return (await stub.GetJob(pb.GetJobRequest(job_id=reply.job_id))).job


def test_the_default_event_history_is_lib_luas() -> None:
    from jobwire_broker.store.scripts import script_source

    found = re.search(r"DEFAULT_EVENT_HISTORY = (\d+)", script_source("lib"))
    assert found and int(found.group(1)) == DEFAULT_EVENT_HISTORY


async def test_queue_defaults_apply_to_jobs_that_leave_them_unset(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    plain = await enqueue(stub, job_pb2.JobSpec(payload=b"before"))
    assert plain.spec.max_attempts == 3 and plain.spec.lease_duration.seconds == 30
    reply = await admin.UpdateQueue(apb.UpdateQueueRequest(queue=Q, settings=tuned()))
    assert reply.queue.settings.max_attempts == 7
    assert reply.queue.effective_settings.keep_completed > 0  # broker default shown
    job = await enqueue(stub, job_pb2.JobSpec(payload=b"after"))
    s = job.spec
    assert (s.max_attempts, s.priority, s.lease_duration.seconds) == (7, 5, 90)
    assert s.execution_timeout.seconds == 600
    assert s.backoff.kind == job_pb2.BACKOFF_KIND_FIXED and s.backoff.initial_delay.seconds == 5
    own = await enqueue(
        stub,
        job_pb2.JobSpec(
            payload=b"own", max_attempts=2, priority=-1, lease_duration={"seconds": 10}
        ),
    )
    assert (own.spec.max_attempts, own.spec.priority, own.spec.lease_duration.seconds) == (
        2,
        -1,
        10,
    )
    # The job enqueued before the change keeps what it was given.
    again = (await stub.GetJob(pb.GetJobRequest(job_id=plain.id))).job
    assert again.spec.max_attempts == 3


async def test_a_field_mask_changes_only_its_fields_and_resets_unset_ones(
    admin: arpc.AdminServiceStub,
) -> None:
    await admin.UpdateQueue(apb.UpdateQueueRequest(queue=Q, settings=tuned()))
    reply = await admin.UpdateQueue(
        apb.UpdateQueueRequest(
            queue=Q,
            settings=apb.QueueSettings(max_attempts=9),
            update_mask=FieldMask(paths=["max_attempts", "priority"]),
        )
    )
    s = reply.queue.settings
    assert s.max_attempts == 9 and not s.HasField("priority") and s.lease_duration.seconds == 90
    assert reply.queue.effective_settings.priority == 0


async def test_effective_settings_show_the_documented_broker_defaults(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await enqueue(stub, job_pb2.JobSpec(payload=b"x"))
    e = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue.effective_settings
    assert (e.max_attempts, e.priority, e.lease_duration.seconds) == (3, 0, 30)
    assert not e.HasField("execution_timeout")  # "Broker default: none", not 0 s
    assert (e.keep_completed, e.completed_max_age.seconds) == (10_000, 3_600)
    assert (e.keep_dead, e.dead_max_age.seconds) == (100_000, 7 * 86_400)
    assert e.event_history == 10_000
    b = e.backoff
    assert (b.kind, b.initial_delay.seconds, b.max_delay.seconds) == (
        job_pb2.BACKOFF_KIND_EXPONENTIAL,
        1,
        3_600,
    )


async def test_a_change_through_one_replica_applies_at_once_through_another(
    redis_server: RedisServer, prefix: str
) -> None:
    settings = broker_settings(redis_server.url, prefix)
    async with running_broker(settings) as a, running_broker(settings) as b:  # noqa: SIM117
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
        ):
            admin_a, stub_b = arpc.AdminServiceStub(ca), rpc.BrokerServiceStub(cb)
            for attempts in (4, 6, 8):
                await admin_a.UpdateQueue(
                    apb.UpdateQueueRequest(
                        queue=Q, settings=apb.QueueSettings(max_attempts=attempts)
                    )
                )
                job = await enqueue(stub_b, job_pb2.JobSpec(payload=b"x"))
                assert job.spec.max_attempts == attempts


async def test_retention_trims_completed_and_dead_jobs_by_count_and_age(
    redis_server: RedisServer, prefix: str
) -> None:
    maintenance = MaintenanceSettings(interval_s=0.05, prune_interval_s=0.1)
    settings = broker_settings(redis_server.url, prefix, maintenance=maintenance)
    async with running_broker(settings) as app:  # noqa: SIM117
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            admin, stub = arpc.AdminServiceStub(channel), rpc.BrokerServiceStub(channel)
            await admin.UpdateQueue(
                apb.UpdateQueueRequest(
                    queue=Q, settings=apb.QueueSettings(keep_completed=5, keep_dead=3)
                )
            )
            specs = [job_pb2.JobSpec(payload=b"%d" % i, max_attempts=1) for i in range(20)]
            await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=specs))
            leased = (await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=20))).jobs
            settle = [
                pb.Settlement(
                    complete=pb.CompleteRequest(job_id=j.job.id, lease_token=j.lease_token)
                )
                if i < 10
                else pb.Settlement(
                    fail=pb.FailRequest(
                        job_id=j.job.id, lease_token=j.lease_token, error={"type": "E"}
                    )
                )
                for i, j in enumerate(leased)
            ]
            await stub.SettleBatch(pb.SettleBatchRequest(settlements=settle))

            async def trimmed() -> bool:
                c = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue.counts
                return (c.completed, c.dead) == (5, 3)

            await eventually(trimmed, timeout_s=5)
            await admin.UpdateQueue(
                apb.UpdateQueueRequest(
                    queue=Q,
                    settings=apb.QueueSettings(
                        completed_max_age={"seconds": 1}, dead_max_age={"seconds": 1}
                    ),
                    update_mask=FieldMask(paths=["completed_max_age", "dead_max_age"]),
                )
            )

            async def aged() -> bool:
                c = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue.counts
                return (c.completed, c.dead) == (0, 0)

            await eventually(aged, timeout_s=5)


async def test_a_paused_queue_leases_nothing_and_resume_wakes_a_parked_long_poll_at_once(
    redis_server: RedisServer, prefix: str
) -> None:
    settings = broker_settings(redis_server.url, prefix)
    async with running_broker(settings) as a, running_broker(settings) as b:  # noqa: SIM117
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
        ):
            admin_a, stub_a, stub_b = (
                arpc.AdminServiceStub(ca),
                rpc.BrokerServiceStub(ca),
                rpc.BrokerServiceStub(cb),
            )
            await stub_a.Enqueue(pb.EnqueueRequest(queue=Q, job={"payload": b"first"}))
            await admin_a.PauseQueue(apb.PauseQueueRequest(queue=Q))
            assert (await admin_a.GetQueue(apb.GetQueueRequest(queue=Q))).queue.paused
            assert not (await stub_a.Lease(pb.LeaseRequest(queue=Q))).jobs
            parked = asyncio.ensure_future(
                stub_b.Lease(pb.LeaseRequest(queue=Q, wait={"seconds": 10}), timeout=15)
            )
            # Enqueues succeed while paused, and wake nothing.
            await stub_a.Enqueue(pb.EnqueueRequest(queue=Q, job={"payload": b"second"}))
            await asyncio.sleep(0.6)
            assert not parked.done()
            start = time.perf_counter()
            await admin_a.ResumeQueue(apb.ResumeQueueRequest(queue=Q))
            reply = await parked
            took = time.perf_counter() - start
            assert reply.jobs and took < 0.1, f"resume took {took * 1000:.0f} ms"
            c = (await admin_a.GetQueue(apb.GetQueueRequest(queue=Q))).queue
            assert not c.paused and c.counts.active == 1 and c.counts.ready == 1


async def test_drain_drops_pending_jobs_and_delete_refuses_a_busy_queue(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    specs = [job_pb2.JobSpec(payload=b"x") for _ in range(5)]
    specs.append(job_pb2.JobSpec(payload=b"later", delay={"seconds": 60}))
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=specs))
    await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=1))
    drained = await admin.DrainQueue(apb.DrainQueueRequest(queue=Q))
    assert drained.deleted == 5
    c = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue.counts
    assert (c.ready, c.scheduled, c.active) == (0, 0, 1)
    await rejected(
        redis,
        prefix,
        lambda: admin.DeleteQueue(apb.DeleteQueueRequest(queue=Q)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "QUEUE_BUSY",
    )
    deleted = await admin.DeleteQueue(apb.DeleteQueueRequest(queue=Q, force=True))
    assert deleted.deleted == 1
    names = [q.name for q in (await admin.ListQueues(apb.ListQueuesRequest())).queues]
    assert Q not in names
    assert not await redis.keys(f"{prefix}:{{{Q}}}:job:*")


async def test_get_queue_reports_age_and_throughput(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await stub.EnqueueBatch(
        pb.EnqueueBatchRequest(queue=Q, jobs=[job_pb2.JobSpec(payload=b"x")] * 3)
    )
    await asyncio.sleep(0.3)
    leased = (await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=2))).jobs
    await stub.Complete(
        pb.CompleteRequest(job_id=leased[0].job.id, lease_token=leased[0].lease_token)
    )
    await stub.Fail(
        pb.FailRequest(
            job_id=leased[1].job.id, lease_token=leased[1].lease_token, error={"type": "E"}
        )
    )
    q = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue
    assert q.oldest_ready_age.ToMilliseconds() >= 250
    assert (q.completed_last_minute, q.failed_last_minute) == (1, 1)
    assert len(q.last_hour) == 60 and sum(m.completed for m in q.last_hour) == 1
    listed = {x.name: x for x in (await admin.ListQueues(apb.ListQueuesRequest())).queues}
    assert listed[Q].counts.completed == 1 and not listed[Q].last_hour


@pytest.mark.parametrize(
    ("settings", "mask", "fields"),
    [
        (apb.QueueSettings(max_attempts=0), [], ["settings.max_attempts"]),
        (apb.QueueSettings(priority=5000), [], ["settings.priority"]),
        (apb.QueueSettings(keep_dead=-1), [], ["settings.keep_dead"]),
        (apb.QueueSettings(event_history=2_000_000), [], ["settings.event_history"]),
        (apb.QueueSettings(lease_duration={"nanos": 5}), [], ["settings.lease_duration"]),
        (apb.QueueSettings(dead_max_age={"seconds": -1}), [], ["settings.dead_max_age"]),
        (
            apb.QueueSettings(backoff=job_pb2.BackoffPolicy(multiplier=0.5)),
            [],
            ["settings.backoff.multiplier"],
        ),
        (apb.QueueSettings(), ["nope"], ["update_mask.paths[0]"]),
    ],
)
async def test_bad_settings_are_rejected_and_write_nothing(
    admin: arpc.AdminServiceStub,
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    settings: apb.QueueSettings,
    mask: list[str],
    fields: list[str],
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(queue=Q, job={"payload": b"seed"}))
    request = apb.UpdateQueueRequest(queue=Q, settings=settings, update_mask=FieldMask(paths=mask))
    await rejected(
        redis, prefix, lambda: admin.UpdateQueue(request), INVALID, "INVALID_ARGUMENT", fields
    )


@pytest.mark.parametrize(
    "rpc_name", ["GetQueue", "PauseQueue", "ResumeQueue", "DrainQueue", "DeleteQueue"]
)
async def test_unknown_and_malformed_queues(
    admin: arpc.AdminServiceStub,
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    rpc_name: str,
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(queue=Q, job={"payload": b"seed"}))
    request_type = getattr(apb, f"{rpc_name}Request")
    call = getattr(admin, rpc_name)
    await rejected(
        redis,
        prefix,
        lambda: call(request_type(queue="never-seen")),
        grpc.StatusCode.NOT_FOUND,
        "QUEUE_NOT_FOUND",
    )
    await rejected(
        redis, prefix, lambda: call(request_type(queue="")), INVALID, "INVALID_ARGUMENT", ["queue"]
    )
    await rejected(
        redis,
        prefix,
        lambda: call(request_type(queue="a{b")),
        INVALID,
        "INVALID_ARGUMENT",
        ["queue"],
    )
