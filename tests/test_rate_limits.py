"""Rate limits (QueueSettings.rate_limit / key_rate_limit) and FailRequest.rate_limit_delay
against a real broker and Valkey over gRPC: leases per window in Redis time, retry_after,
long-polls that wait through a limit, and holds of a key or a queue.

The acceptance run lasts RATE_TEST_S seconds: the issue's 20 by default
(JOBWIRE_RATE_TEST_S sets another)."""

import asyncio
import os
import time
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import enqueue, lease, millis, ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import stub_for
from test_bad_input import World, refused, world  # noqa: F401  (world: a fixture)

pytestmark = pytest.mark.redis_matrix

RATE_TEST_S = float(os.environ.get("JOBWIRE_RATE_TEST_S", "20"))
INVALID = "INVALID_ARGUMENT"


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


def rate(limit: int, period_ms: int) -> apb.RateLimit:
    return apb.RateLimit(limit=limit, period=ms(period_ms))


async def limit_queue(admin: arpc.AdminServiceStub, **settings: apb.RateLimit) -> apb.Queue:
    reply = await admin.UpdateQueue(
        apb.UpdateQueueRequest(
            queue="q",
            settings=apb.QueueSettings(**settings),
            update_mask=FieldMask(paths=list(settings)),
        )
    )
    return reply.queue


async def enqueue_many(stub: rpc.BrokerServiceStub, n: int, **spec: object) -> None:
    for start in range(0, n, 500):
        jobs = [job_pb2.JobSpec(payload=b"{}", **spec) for _ in range(min(500, n - start))]  # type: ignore[arg-type]
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="q", jobs=jobs))


def seconds_of(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


# -- the acceptance test -------------------------------------------------------------------


async def test_10_per_second_with_10_workers(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    queue = await limit_queue(admin, rate_limit=rate(10, 1000))
    assert queue.settings.rate_limit.limit == 10
    assert seconds_of(queue.effective_settings.rate_limit.period) == 1.0
    await enqueue_many(stub, int(RATE_TEST_S * 10) + 100)
    started: list[int] = []  # Redis time of each lease (the job's start_time), ms
    calls: Counter[int] = Counter()
    end = time.monotonic() + RATE_TEST_S

    async def worker(n: int) -> None:
        async with stub_for(broker.port) as own:
            while time.monotonic() < end:
                wait = max(1, int((end - time.monotonic()) * 1000))
                calls[n] += 1
                reply = await own.Lease(pb.LeaseRequest(queue="q", max_jobs=5, wait=ms(wait)))
                for job in reply.jobs:
                    started.append(millis(job.job.start_time))
                    await own.Complete(
                        pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token)
                    )

    await asyncio.gather(*(worker(n) for n in range(10)))
    started.sort()
    busiest = max(
        sum(1 for t in started[i:] if t < start + 1000) for i, start in enumerate(started)
    )
    assert busiest <= 10, f"{busiest} leases in one second"
    per_s = len(started) / RATE_TEST_S
    print(f"{per_s:.2f} leases/s, at most {busiest} in a second, Lease calls {dict(calls)}")
    assert per_s >= 9, f"only {per_s:.1f} leases a second"
    # Long-polls sleep through the limit: a Lease call per lease, give or take.
    assert max(calls.values()) <= 3 * RATE_TEST_S, calls


# -- retry_after and long-polls ------------------------------------------------------------


async def test_a_limited_lease_says_when_to_come_back(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await limit_queue(admin, rate_limit=rate(2, 2000))
    await enqueue_many(stub, 5)
    first = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=5))
    assert len(first.jobs) == 2 and not first.HasField("retry_after")
    held = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=5))
    assert held.jobs == []
    assert 1.0 < seconds_of(held.retry_after) <= 2.0
    start = time.monotonic()
    waited = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=5, wait=ms(5000)))
    took = time.monotonic() - start
    assert len(waited.jobs) == 2, "a long-poll leases as soon as the window allows"
    assert 1.0 < took < 3.0, took


async def test_a_long_poll_shorter_than_the_limit_returns_retry_after(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await limit_queue(admin, rate_limit=rate(1, 5000))
    await enqueue_many(stub, 2)
    assert len(await lease(stub)) == 1
    reply = await stub.Lease(pb.LeaseRequest(queue="q", wait=ms(300)))
    assert reply.jobs == [] and seconds_of(reply.retry_after) > 3


async def test_an_empty_queue_sets_no_retry_after(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await limit_queue(admin, rate_limit=rate(1, 5000))
    reply = await stub.Lease(pb.LeaseRequest(queue="q"))
    assert reply.jobs == [] and not reply.HasField("retry_after")


async def test_key_rate_limit_counts_each_key_apart(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await limit_queue(admin, key_rate_limit=rate(2, 60_000))
    for key in ("a", "b"):
        await enqueue_many(stub, 4, concurrency_key=key, concurrency_limit=10)
    await enqueue_many(stub, 2)  # unkeyed jobs have no key limit
    jobs = await lease(stub, n=20)
    keys = Counter(j.job.spec.concurrency_key for j in jobs)
    assert keys == {"a": 2, "b": 2, "": 2}
    reply = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=20))
    assert reply.jobs == [] and 50 < seconds_of(reply.retry_after) <= 60


# -- rate_limit_delay ----------------------------------------------------------------------


async def fail_limited(
    stub: rpc.BrokerServiceStub, job: pb.LeasedJob, delay_ms: int, **request: object
) -> pb.FailResponse:
    reply: pb.FailResponse = await stub.Fail(
        pb.FailRequest(
            job_id=job.job.id,
            lease_token=job.lease_token,
            rate_limit_delay=ms(delay_ms),
            **request,  # type: ignore[arg-type]
        )
    )
    return reply


async def test_rate_limit_delay_holds_the_key_back(stub: rpc.BrokerServiceStub) -> None:
    await enqueue(stub, concurrency_key="api", concurrency_limit=5)
    sibling = await enqueue(stub, concurrency_key="api", concurrency_limit=5)
    other = await enqueue(stub, concurrency_key="elsewhere")
    jobs = await lease(stub, n=1)
    reply = await fail_limited(
        stub, jobs[0], 1500, error=job_pb2.JobError(type="TooManyRequests", message="429")
    )
    assert reply.state == job_pb2.JOB_STATE_SCHEDULED
    got = (await stub.GetJob(pb.GetJobRequest(job_id=jobs[0].job.id))).job
    assert got.last_error.type == "TooManyRequests"
    assert got.counted_attempts == 0, "a rate-limited attempt does not count"
    assert [j.job.id for j in await lease(stub, n=5)] == [other]  # the key waits
    held = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=5))
    assert held.jobs == [] and 0.5 < seconds_of(held.retry_after) <= 1.5
    start = time.monotonic()
    back = await lease(stub, n=5, wait_ms=5000)
    assert time.monotonic() - start > 0.5
    assert sibling in [j.job.id for j in back]


async def test_rate_limit_delay_of_an_unkeyed_job_holds_the_queue_back(
    stub: rpc.BrokerServiceStub,
) -> None:
    await enqueue(stub)
    second = await enqueue(stub)
    keyed = await enqueue(stub, concurrency_key="k")
    (job,) = await lease(stub)
    await fail_limited(stub, job, 1000)  # no error given: allowed with rate_limit_delay
    held = await stub.Lease(pb.LeaseRequest(queue="q", max_jobs=5))
    assert held.jobs == [] and 0.3 < seconds_of(held.retry_after) <= 1.0
    back = await lease(stub, n=5, wait_ms=5000)
    ids = {j.job.id for j in back}
    assert {second, keyed} <= ids
    # The held job itself came back after the same delay, its attempt uncounted.
    (again,) = [j for j in back if j.job.id == job.job.id]
    assert (again.attempt, again.job.counted_attempts) == (2, 1)


# -- the SDK worker ------------------------------------------------------------------------


async def test_the_sdk_worker_turns_rate_limited_into_a_hold(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    import jobwire

    runs: list[float] = []

    async def handler(job: jobwire.Job) -> str:
        runs.append(time.monotonic())
        if len(runs) == 1:
            raise jobwire.RateLimited(0.8)
        return "ok"

    async with jobwire.Client(f"127.0.0.1:{broker.port}") as client:
        first = await client.enqueue("q", {"n": 1}, concurrency_key="api")
        worker = jobwire.Worker(f"127.0.0.1:{broker.port}", lease_wait=1.0)
        worker.register("q", handler)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        try:
            for _ in range(500):
                if len(runs) >= 2:
                    break
                await asyncio.sleep(0.01)
        finally:
            worker.stop()
            await running
        info = await client.get(first.job_id)
    assert len(runs) == 2 and runs[1] - runs[0] >= 0.7
    assert info.state == jobwire.JobState.COMPLETED


# -- bad input writes nothing --------------------------------------------------------------

QUEUE_CASES = {
    "concurrency_limit_0": ({"concurrency_limit": 0}, ["settings.concurrency_limit"]),
    "concurrency_limit_over": ({"concurrency_limit": 10_001}, ["settings.concurrency_limit"]),
    "rate_limit_0": ({"rate_limit": rate(0, 1000)}, ["settings.rate_limit.limit"]),
    "rate_limit_over": ({"rate_limit": rate(1_000_001, 1000)}, ["settings.rate_limit.limit"]),
    "rate_period_9ms": ({"rate_limit": rate(1, 9)}, ["settings.rate_limit.period"]),
    "rate_period_over_24h": (
        {"rate_limit": rate(1, 86_400_001)},
        ["settings.rate_limit.period"],
    ),
    "rate_period_unset": (
        {"rate_limit": apb.RateLimit(limit=1)},
        ["settings.rate_limit.period"],
    ),
    "key_rate_limit_0": ({"key_rate_limit": rate(0, 1000)}, ["settings.key_rate_limit.limit"]),
    "key_rate_period_negative": (
        {"key_rate_limit": apb.RateLimit(limit=1, period=Duration(seconds=-1))},
        ["settings.key_rate_limit.period"],
    ),
}


@pytest.mark.parametrize(("settings", "fields"), QUEUE_CASES.values(), ids=QUEUE_CASES.keys())
async def test_update_queue_rejects_bad_limits(
    admin: arpc.AdminServiceStub,
    redis: Redis,
    prefix: str,
    world: World,  # noqa: F811
    settings: dict[str, object],
    fields: list[str],
) -> None:
    request = apb.UpdateQueueRequest(queue="q", settings=apb.QueueSettings(**settings))  # type: ignore[arg-type]
    await refused(redis, prefix, lambda: admin.UpdateQueue(request), fields)


FAIL_CASES = {
    "delay_0": (Duration(), ["rate_limit_delay"]),
    "delay_negative": (Duration(seconds=-1), ["rate_limit_delay"]),
    "delay_over_1h": (Duration(seconds=3600, nanos=1), ["rate_limit_delay"]),
}


@pytest.mark.parametrize(("delay", "fields"), FAIL_CASES.values(), ids=FAIL_CASES.keys())
async def test_fail_rejects_a_bad_rate_limit_delay(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,  # noqa: F811
    delay: Duration,
    fields: list[str],
) -> None:
    request = pb.FailRequest(
        job_id=world.active,
        lease_token=world.token,
        error=job_pb2.JobError(type="E"),
        rate_limit_delay=delay,
    )
    await refused(redis, prefix, lambda: stub.Fail(request), fields)


async def test_the_sdk_worker_sleeps_through_retry_after(
    admin: arpc.AdminServiceStub,
    stub: rpc.BrokerServiceStub,
    broker: BrokerApp,
    redis: Redis,
    prefix: str,
) -> None:
    """With a Lease wait shorter than the limit, the broker answers retry_after; the worker
    sleeps that long instead of asking again every wait (lease.lua records each Lease
    call in the worker registry's last_lease_ms)."""
    import jobwire

    await limit_queue(admin, rate_limit=rate(1, 2500))
    await enqueue_many(stub, 3)
    done: list[float] = []

    async def handler(job: jobwire.Job) -> None:
        done.append(time.monotonic())

    worker = jobwire.Worker(f"127.0.0.1:{broker.port}", lease_wait=0.1, worker_id="w-sleepy")
    worker.register("q", handler)
    running = asyncio.create_task(worker.run(install_signal_handlers=False))
    record = f"{prefix}:{{q}}:worker:w-sleepy"
    idle = 0.0
    try:
        for _ in range(300):
            if len(done) >= 2:
                break
            last = await redis.hget(record, "last_lease_ms")
            (now_s, now_us) = await redis.time()
            if last is not None and done:
                idle = max(idle, now_s * 1000 + now_us / 1000 - int(last))
            await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await running
    assert len(done) >= 2 and done[1] - done[0] > 2.0
    assert idle > 1000, f"the worker asked again after {idle:.0f} ms at most"


def test_the_settings_file_carries_the_limits() -> None:
    from jobwire._queue_file import QueueFileError, requests_from_toml
    from jobwire_broker.api.admin_queues import parse_update
    from jobwire_broker.domain.limits import Defaults, Limits
    from jobwire_broker.domain.model import RateLimit

    text = """
    [queues.market]
    concurrency_limit = 2
    rate_limit = { limit = 10, period = "1s" }
    key_rate_limit = { limit = 100, period = "1m" }
    """
    (request,) = requests_from_toml(text, "q.toml")
    update = parse_update(Limits(), Defaults(), request)
    assert update.values.concurrency_limit == 2
    assert update.values.rate_limit == RateLimit(10, 1000)
    assert update.values.key_rate_limit == RateLimit(100, 60_000)
    assert {"concurrency_limit", "rate_limit", "key_rate_limit"} <= set(update.fields)
    with pytest.raises(QueueFileError, match="rate_limit"):
        requests_from_toml("[queues.m]\nrate_limit = { limit = 10 }\n", "q.toml")


async def test_the_window_slides_in_redis_time(redis: Redis, prefix: str) -> None:
    """On the scripts' simulated clock: 3 leases per 1000 ms, exactly, at the edges."""
    from jobwire_broker.domain.model import NewJob, QueueSettings, RateLimit
    from jobwire_broker.store import Store
    from jobwire_broker.store import queues as store_queues

    now = [1_800_000_000_000]
    store = Store(redis, prefix, clock=lambda: now[0])
    await store_queues.update(store, "q", QueueSettings(rate_limit=RateLimit(3, 1000)), [])
    await store.enqueue("q", [NewJob(b"x") for _ in range(10)])

    async def leased(at: int) -> tuple[int, int | None]:
        now[0] = 1_800_000_000_000 + at
        batch = await store.lease("q", 10)
        return len(batch.jobs), batch.retry_after_ms

    now[0] = 1_800_000_000_000
    assert len((await store.lease("q", 2)).jobs) == 2
    assert await leased(500) == (1, 500)  # the third fits; the fourth waits for t=1000
    assert await leased(999) == (0, 1)
    assert await leased(1000) == (2, 500)  # t=0 left the window; t=500 is still in it
    assert await leased(1499) == (0, 1)


async def test_a_mask_without_a_value_clears_the_limit(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await limit_queue(admin, rate_limit=rate(1, 60_000), key_rate_limit=rate(1, 60_000))
    await enqueue_many(stub, 3)
    assert len(await lease(stub, n=3)) == 1
    reply = await admin.UpdateQueue(
        apb.UpdateQueueRequest(queue="q", update_mask=FieldMask(paths=["rate_limit"]))
    )
    assert not reply.queue.settings.HasField("rate_limit")
    assert not reply.queue.effective_settings.HasField("rate_limit")
    assert reply.queue.settings.key_rate_limit.limit == 1
    assert len(await lease(stub, n=3)) == 2
    settings = await redis.hgetall(f"{prefix}:{{q}}:settings")
    assert b"rate_limit.limit" not in settings and b"key_rate_limit.limit" in settings
