"""Start deadlines (JobSpec.start_deadline, state EXPIRED) and idempotency modes
(FIRST, REPLACE = debounce, EXTEND), as job.proto documents them: against the scripts on
a simulated clock, and end to end over real gRPC with a real broker and Valkey."""

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from jobwire import Client
from jobwire import IdempotencyMode as IdempotencyModeSdk
from jobwire import JobState as SdkJobState
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.maintenance import MaintenanceSettings
from jobwire_broker.domain.model import (
    FailItem,
    IdempotencyMode,
    JobError,
    JobState,
    NewJob,
    Retention,
)
from jobwire_broker.server import BrokerApp
from jobwire_broker.store import DeadlineRefused, Store
from redis.asyncio import Redis
from support import RedisServer, broker_settings, running_broker, stub_for

Q = "q"
T0 = 1_800_000_000_000
REPLACE, EXTEND = job_pb2.IDEMPOTENCY_MODE_REPLACE, job_pb2.IDEMPOTENCY_MODE_EXTEND
EXPIRED = job_pb2.JOB_STATE_EXPIRED


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def s(redis: Redis, prefix: str, clock: Clock) -> Store:
    return Store(redis, prefix, clock=clock)


def key(prefix: str, name: str) -> str:
    return f"{prefix}:{{{Q}}}:{name}"


async def members(redis: Redis, prefix: str, name: str) -> set[str]:
    return {m.decode() for m in await redis.zrange(key(prefix, name), 0, -1)}


async def places(redis: Redis, prefix: str) -> dict[str, set[str]]:
    """Every job's sorted set (the accounting: each job in exactly one place)."""
    names = ("ready", "scheduled", "active", "completed", "dead", "cancelled", "expired")
    return {n: found for n in names if (found := await members(redis, prefix, n))}


def ts(seconds: float) -> Timestamp:
    """A time in whole milliseconds, as the broker keeps it."""
    t = Timestamp()
    t.FromMilliseconds(int(seconds * 1000))
    return t


def spec(**kwargs: Any) -> job_pb2.JobSpec:
    kwargs.setdefault("payload", b"x")
    return job_pb2.JobSpec(**kwargs)


async def enqueue(stub: rpc.BrokerServiceStub, **kwargs: Any) -> pb.EnqueueResponse:
    return await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=spec(**kwargs)))


async def get(stub: rpc.BrokerServiceStub, job_id: str) -> job_pb2.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


# -- scripts, on a simulated clock ---------------------------------------------------


async def test_lease_expires_an_overdue_job_instead_of_leasing_it(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    late, on_time = await s.enqueue(
        Q,
        [
            NewJob(b"late", start_deadline_ms=T0 + 1_000),
            NewJob(b"ok", start_deadline_ms=T0 + 9_000),
        ],
    )
    assert await redis.zrange(key(prefix, "deadlines"), 0, -1, withscores=True) == [
        (b"1", T0 + 1_000),
        (b"2", T0 + 9_000),
    ]
    clock.now += 1_000  # exactly at the deadline: too late
    (job,) = (await s.lease(Q, 5)).jobs
    assert job.seq == on_time.seq
    gone = await s.get(Q, late.seq)
    assert gone is not None
    assert (gone.state, gone.attempt, gone.finished_ms) == (JobState.EXPIRED, 0, T0 + 1_000)
    assert await places(redis, prefix) == {"expired": {"1"}, "active": {"2"}}
    assert await redis.zcard(key(prefix, "deadlines")) == 0, "a leased job leaves the set"


async def test_lease_goes_past_many_overdue_jobs_in_bounded_calls(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"late", start_deadline_ms=T0 + 10) for _ in range(120)])
    await s.enqueue(Q, [NewJob(b"ok")])
    clock.now += 10
    (job,) = (await s.lease(Q, 50)).jobs
    assert job.payload == b"ok"
    assert len(await members(redis, prefix, "expired")) == 120


async def test_expire_sweeps_ready_and_scheduled_jobs_in_batches(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    ready = [NewJob(b"r", start_deadline_ms=T0 + 100) for _ in range(60)]
    scheduled = [NewJob(b"s", delay_ms=50, start_deadline_ms=T0 + 100) for _ in range(5)]
    await s.enqueue(Q, [*ready, *scheduled, NewJob(b"later", start_deadline_ms=T0 + 500)])
    clock.now += 99
    assert await s.expire(Q, 50) == (0, 0)
    clock.now += 1
    assert await s.expire(Q, 50) == (50, 50)
    assert await s.expire(Q, 50) == (15, 15)
    assert await places(redis, prefix) == {
        "ready": {"66"},
        "expired": {str(i) for i in range(1, 66)},
    }


async def test_a_retry_is_not_held_to_the_start_deadline(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    (e,) = await s.enqueue(Q, [NewJob(b"x", start_deadline_ms=T0 + 1_000)])
    (job,) = (await s.lease(Q, 1)).jobs
    error = JobError("Boom", "boom")
    (failed,) = await s.fail(Q, [FailItem(e.seq, job.token, error, retry_delay_ms=5_000)])
    assert failed.state is JobState.SCHEDULED
    clock.now += 5_000
    assert await s.expire(Q, 50) == (0, 0)
    (again,) = (await s.lease(Q, 1)).jobs
    assert (again.seq, again.attempt) == (e.seq, 2)


async def test_enqueue_refuses_a_deadline_before_a_delay_and_writes_nothing(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"seed")])
    before = sorted(await redis.keys(f"{prefix}:*"))
    with pytest.raises(DeadlineRefused) as refused:
        await s.enqueue(
            Q,
            [
                NewJob(b"fine", start_deadline_ms=T0 + 10_000),
                NewJob(b"x", delay_ms=5_000, start_deadline_ms=T0 + 4_000),
                NewJob(b"y", start_deadline_ms=T0),
            ],
        )
    assert refused.value.refusals == [
        (1, "before_run_time", T0, T0 + 5_000),
        (2, "past", T0, T0),
    ]
    assert sorted(await redis.keys(f"{prefix}:*")) == before
    assert await redis.get(key(prefix, "seq")) == b"1"


async def test_retention_keeps_expired_jobs_like_cancelled_ones(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"x", start_deadline_ms=T0 + 1) for _ in range(3)])
    clock.now += 1
    await s.expire(Q)
    clock.now += 10
    keep_two = Retention(completed_age_ms=3_600_000, completed_count=2)
    assert await s.prune(Q, keep_two) == 1
    assert len(await members(redis, prefix, "expired")) == 2
    clock.now += 3_600_000
    assert await s.prune(Q, keep_two) == 2
    assert await redis.keys(key(prefix, "job:*")) == []


async def test_replace_rewrites_a_pending_job_and_clears_what_it_leaves_out(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    mode = IdempotencyMode.REPLACE
    (first,) = await s.enqueue(
        Q,
        [
            NewJob(
                b"a",
                content_type="text/a",
                headers={"h": "1"},
                idempotency_key="k",
                delay_ms=500,
                start_deadline_ms=T0 + 900,
                idempotency_mode=mode,
            )
        ],
    )
    assert first.state is JobState.SCHEDULED
    clock.now += 100
    (second,) = await s.enqueue(
        Q, [NewJob(b"b", priority=3, idempotency_key="k", idempotency_mode=mode)]
    )
    assert (second.seq, second.duplicate, second.state) == (first.seq, True, JobState.READY)
    job = await s.get(Q, first.seq)
    assert job is not None
    assert (job.payload, job.content_type, dict(job.headers), job.priority) == (b"b", "", {}, 3)
    assert (job.created_ms, job.run_at_ms, job.start_deadline_ms) == (T0, T0 + 100, 0)
    assert await places(redis, prefix) == {"ready": {"1"}}
    assert await redis.zcard(key(prefix, "deadlines")) == 0


async def test_extend_and_replace_restart_the_window_first_does_not(
    s: Store, redis: Redis, prefix: str
) -> None:
    for n, mode in enumerate(IdempotencyMode):
        idem = f"k{n}"
        job = NewJob(
            b"x", idempotency_key=idem, idempotency_window_ms=60_000, idempotency_mode=mode
        )
        await s.enqueue(Q, [job])
        await redis.pexpire(key(prefix, f"idem:{idem}"), 1_000)  # near its end
        (again,) = await s.enqueue(Q, [job])
        assert again.duplicate
        ttl = await redis.pttl(key(prefix, f"idem:{idem}"))
        if mode is IdempotencyMode.FIRST:
            assert ttl <= 1_000
        else:
            assert ttl > 50_000, mode


# -- end to end ----------------------------------------------------------------------


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


@pytest.fixture
async def lazy_broker(redis_server: RedisServer, prefix: str) -> AsyncIterator[BrokerApp]:
    """A broker whose maintenance loop never gets round to sweeping: only Lease expires."""
    settings = broker_settings(
        redis_server.url, prefix, maintenance=MaintenanceSettings(interval_s=3_600)
    )
    async with running_broker(settings) as app:
        yield app


async def wait_until(deadline_s: float) -> None:
    """Sleeps until the wall clock (the same host's as Redis TIME) passes deadline_s."""
    await asyncio.sleep(max(0.0, deadline_s - time.time()) + 0.02)


async def test_lease_after_the_deadline_expires_the_job_and_leases_the_next(
    lazy_broker: BrokerApp, redis: Redis, prefix: str
) -> None:
    async with stub_for(lazy_broker.port) as stub:
        deadline = time.time() + 0.3
        late = await enqueue(stub, payload=b"late", start_deadline=ts(deadline))
        assert (await get(stub, late.job_id)).spec.start_deadline == ts(deadline)
        ok = await enqueue(stub, payload=b"ok")
        await wait_until(deadline)
        assert (await get(stub, late.job_id)).state == job_pb2.JOB_STATE_READY, "no sweep ran"
        reply = await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=10))
        assert [j.job.id for j in reply.jobs] == [ok.job_id]
        job = await get(stub, late.job_id)
        assert job.state == EXPIRED and job.attempt == 0
        assert job.HasField("finish_time") and not job.HasField("start_time")
        assert (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs == []
    assert await places(redis, prefix) == {"expired": {"1"}, "active": {"2"}}


async def test_the_sweep_expires_a_job_nobody_leases_and_its_watcher_sees_it(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    deadline = time.time() + 0.4
    job_id = (await enqueue(stub, start_deadline=ts(deadline))).job_id
    started = time.monotonic()
    seen = []
    async with asyncio.timeout(10):
        async for event in stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id)):
            seen.append((event.kind, event.job.state))
    # The stream ended by itself, after the deadline (the sweep runs every ~0.25 s).
    assert time.time() >= deadline and time.monotonic() - started < 8
    assert seen == [
        (pb.EVENT_KIND_SNAPSHOT, job_pb2.JOB_STATE_READY),
        (pb.EVENT_KIND_STATE_CHANGED, EXPIRED),
    ]
    job = await get(stub, job_id)
    assert job.state == EXPIRED and job.HasField("finish_time")
    assert job.finish_time.ToMilliseconds() >= int(deadline * 1000)
    # Terminal: cancelling it is refused, Lease never sees it, admin counts and lists it.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "JOB_FINISHED" in str(refused.value.trailing_metadata())
    assert (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs == []
    queue = (await admin.GetQueue(apb.GetQueueRequest(queue=Q))).queue
    assert (queue.counts.expired, queue.counts.ready) == (1, 0)
    listed = await admin.ListJobs(apb.ListJobsRequest(queue=Q, state=EXPIRED))
    assert [j.id for j in listed.jobs] == [job_id]
    deleted = await admin.DeleteJobs(apb.DeleteJobsRequest(queue=Q, state=EXPIRED))
    assert deleted.deleted == 1


async def test_a_job_leased_in_time_then_failed_is_retried_past_the_deadline(
    stub: rpc.BrokerServiceStub,
) -> None:
    deadline = time.time() + 0.5
    job_id = (await enqueue(stub, start_deadline=ts(deadline))).job_id
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    await stub.Fail(
        pb.FailRequest(
            job_id=job_id,
            lease_token=leased.lease_token,
            error=job_pb2.JobError(type="Boom"),
            retry_delay=Duration(nanos=700_000_000),
        )
    )
    await wait_until(deadline + 0.7)
    (again,) = (await stub.Lease(pb.LeaseRequest(queue=Q, wait=Duration(seconds=5)))).jobs
    assert (again.job.id, again.attempt) == (job_id, 2)


async def test_replace_keeps_the_last_payload_of_a_burst(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    replies = [
        await enqueue(stub, payload=b"%d" % i, idempotency_key="k", idempotency_mode=REPLACE)
        for i in range(100)
    ]
    assert len({r.job_id for r in replies}) == 1
    assert [r.duplicate for r in replies] == [False] + [True] * 99
    job = await get(stub, replies[0].job_id)
    assert job.spec.payload == b"99" and job.state == job_pb2.JOB_STATE_READY
    assert await places(redis, prefix) == {"ready": {"1"}}
    # Once leased, the next enqueue is a new job that takes the key.
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    assert leased.job.spec.payload == b"99"
    fresh = await enqueue(stub, payload=b"new", idempotency_key="k", idempotency_mode=REPLACE)
    assert not fresh.duplicate and fresh.job_id != replies[0].job_id
    again = await enqueue(stub, payload=b"newer", idempotency_key="k", idempotency_mode=REPLACE)
    assert again.duplicate and again.job_id == fresh.job_id
    assert (await get(stub, fresh.job_id)).spec.payload == b"newer"
    assert await places(redis, prefix) == {"active": {"1"}, "ready": {"2"}}


async def test_replace_from_several_clients_at_once_leaves_one_job(
    broker: BrokerApp, redis: Redis, prefix: str
) -> None:
    async def client(n: int) -> list[pb.EnqueueResponse]:
        async with stub_for(broker.port) as stub:
            return [
                await enqueue(
                    stub, payload=b"%d-%d" % (n, i), idempotency_key="k", idempotency_mode=REPLACE
                )
                for i in range(25)
            ]

    replies = [r for rs in await asyncio.gather(*(client(n) for n in range(4))) for r in rs]
    assert len(replies) == 100 and len({r.job_id for r in replies}) == 1
    assert sum(not r.duplicate for r in replies) == 1
    async with stub_for(broker.port) as stub:
        last = await enqueue(stub, payload=b"last", idempotency_key="k", idempotency_mode=REPLACE)
        assert last.job_id == replies[0].job_id
        assert (await get(stub, last.job_id)).spec.payload == b"last"
    assert await places(redis, prefix) == {"ready": {"1"}}
    assert await redis.get(key(prefix, "seq")) == b"1"


async def test_replace_in_one_batch_later_jobs_see_earlier_ones(
    stub: rpc.BrokerServiceStub,
) -> None:
    jobs = [
        spec(payload=p, idempotency_key="k", idempotency_mode=REPLACE) for p in (b"a", b"b", b"c")
    ]
    jobs.append(spec(payload=b"other", idempotency_key="o", idempotency_mode=EXTEND))
    jobs.append(spec(payload=b"other2", idempotency_key="o", idempotency_mode=EXTEND))
    reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=jobs))
    ids = [r.job_id for r in reply.results]
    assert ids[0] == ids[1] == ids[2] and ids[3] == ids[4] and ids[0] != ids[3]
    assert [r.duplicate for r in reply.results] == [False, True, True, False, True]
    assert (await get(stub, ids[0])).spec.payload == b"c"
    assert (await get(stub, ids[3])).spec.payload == b"other"


async def test_replace_of_a_delayed_job_counts_its_delay_again(
    stub: rpc.BrokerServiceStub,
) -> None:
    first = await enqueue(
        stub, idempotency_key="k", idempotency_mode=REPLACE, delay=Duration(seconds=60)
    )
    assert first.state == job_pb2.JOB_STATE_SCHEDULED
    now = await enqueue(stub, idempotency_key="k", idempotency_mode=REPLACE)
    assert (now.job_id, now.duplicate, now.state) == (first.job_id, True, job_pb2.JOB_STATE_READY)
    later = await enqueue(
        stub, idempotency_key="k", idempotency_mode=REPLACE, delay=Duration(seconds=30)
    )
    assert later.state == job_pb2.JOB_STATE_SCHEDULED
    job = await get(stub, first.job_id)
    assert 25 < job.run_time.ToSeconds() - time.time() <= 31


async def test_extend_keeps_deduplicating_past_the_first_window(
    stub: rpc.BrokerServiceStub,
) -> None:
    window = Duration(seconds=1)
    first = await enqueue(
        stub, idempotency_key="k", idempotency_window=window, idempotency_mode=EXTEND
    )
    start = time.monotonic()
    while time.monotonic() - start < 2.5:  # 2.5 windows, an enqueue every 0.2 s
        await asyncio.sleep(0.2)
        again = await enqueue(
            stub, idempotency_key="k", idempotency_window=window, idempotency_mode=EXTEND
        )
        assert (again.job_id, again.duplicate) == (first.job_id, True)
    # Without enqueues the window ends as usual.
    await asyncio.sleep(1.3)
    after = await enqueue(stub, idempotency_key="k", idempotency_window=window)
    assert not after.duplicate and after.job_id != first.job_id


async def test_sdk_options_and_state(broker: BrokerApp, admin: arpc.AdminServiceStub) -> None:
    async with Client(f"127.0.0.1:{broker.port}") as client:
        soon = await client.enqueue(Q, b"soon", start_within=0.3)
        first = await client.enqueue(
            Q, b"a", idempotency_key="k", idempotency_mode=IdempotencyModeSdk.REPLACE
        )
        second = await client.enqueue(
            Q, b"b", idempotency_key="k", idempotency_mode=IdempotencyModeSdk.REPLACE
        )
        assert second.job_id == first.job_id and second.duplicate
        async with asyncio.timeout(10):
            states = [e.state async for e in client.watch(soon.job_id)]
        assert states[-1] is SdkJobState.EXPIRED and states[-1].terminal
        assert (await client.get(soon.job_id)).state is SdkJobState.EXPIRED
    # Queue watchers see the expiry as a cancellation with state EXPIRED.
    async with asyncio.timeout(10):
        async for event in admin.WatchQueue(apb.WatchQueueRequest(queue=Q, after_event_id="0")):
            if event.job_id == soon.job_id and event.state == EXPIRED:
                assert event.kind == apb.QUEUE_EVENT_KIND_CANCELLED
                break


async def test_a_waiting_job_expires_and_an_expired_job_fails_its_dependants(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    """Deadlines meet dependencies: a job WAITING past its start deadline ends expired
    (the sweep looks at waiting jobs too), and the job that waited for it fails (FAIL)."""
    (dep,) = await s.enqueue(Q, [NewJob(b"dep", start_deadline_ms=T0 + 100)])
    (mid,) = await s.enqueue(
        Q, [NewJob(b"mid", depends_on=(f"{Q}:{dep.seq}",), start_deadline_ms=T0 + 50)]
    )
    (last,) = await s.enqueue(Q, [NewJob(b"last", depends_on=(f"{Q}:{dep.seq}",))])
    assert mid.state is JobState.WAITING and last.state is JobState.WAITING
    clock.now += 50
    assert await s.expire(Q, 50) == (1, 1)  # mid, while it waits
    clock.now += 50
    assert await s.expire(Q, 50) == (1, 1)  # dep; last fails with it
    assert await places(redis, prefix) == {
        "expired": {str(dep.seq), str(mid.seq)},
        "dead": {str(last.seq)},
    }
    assert await members(redis, prefix, "blocked") == set()
