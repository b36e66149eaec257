"""Concurrency keys (JobSpec.concurrency_key / concurrency_limit) against a real broker and
Valkey over gRPC: a key never runs more than its limit, other keys are leased past a key
at its limit, keys are served round-robin, and each way out of 'active' frees the slot."""

import asyncio
import random
import re
import time
from collections import Counter

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from helpers import enqueue, lease, ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.limits import Limits
from jobwire_broker.server import BrokerApp
from jobwire_broker.store.scripts import script_source
from redis.asyncio import Redis
from support import BrokerProcess, RedisServer, stub_for
from test_bad_input import World, refused, world  # noqa: F401  (world: a fixture)

pytestmark = pytest.mark.redis_matrix

INVALID = "INVALID_ARGUMENT"


def keyed(key: str, limit: int = 0, payload: bytes = b"{}", **spec: object) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(
        payload=payload,
        concurrency_key=key,
        concurrency_limit=limit,
        **spec,  # type: ignore[arg-type]
    )


async def enqueue_many(stub: rpc.BrokerServiceStub, specs: list[job_pb2.JobSpec]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(specs), 500):
        reply = await stub.EnqueueBatch(
            pb.EnqueueBatchRequest(queue="q", jobs=specs[start : start + 500])
        )
        ids += [r.job_id for r in reply.results]
    return ids


async def counts(broker: BrokerApp) -> apb.QueueCounts:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        reply = await arpc.AdminServiceStub(channel).GetQueue(apb.GetQueueRequest(queue="q"))
        return reply.queue.counts


def key_of(job: pb.LeasedJob) -> str:
    return job.job.spec.concurrency_key


async def assert_no_key_left_in_line(redis: Redis, prefix: str) -> None:
    """Every slot was given back: no key counts active jobs, waits its turn or is held,
    and no key's set of ready jobs is left."""
    group = f"{prefix}:{{q}}:group:"
    assert await redis.exists(group + "active", group + "rotation", group + "parked") == 0
    assert await redis.keys(group + "ready:*") == []


# -- the acceptance tests ------------------------------------------------------------------


async def test_2000_jobs_over_50_keys_never_overlap_within_a_key(
    stub: rpc.BrokerServiceStub, broker: BrokerApp, redis: Redis, prefix: str
) -> None:
    specs = [keyed(f"wallet:{i % 50}", 1, payload=str(i).encode()) for i in range(2000)]
    random.Random(7).shuffle(specs)
    await enqueue_many(stub, specs)
    assert (await counts(broker)).ready == 2000

    running: Counter[str] = Counter()
    overlaps: list[str] = []
    done: list[str] = []
    most_at_once = 0

    async def worker() -> None:
        nonlocal most_at_once
        async with stub_for(broker.port) as own:
            while len(done) < 2000:
                jobs = (await own.Lease(pb.LeaseRequest(queue="q", max_jobs=3, wait=ms(300)))).jobs
                for job in jobs:
                    key = key_of(job)
                    running[key] += 1
                    if running[key] > 1:
                        overlaps.append(key)
                    most_at_once = max(most_at_once, sum(1 for n in running.values() if n))
                await asyncio.sleep(random.random() * 0.002)
                for job in jobs:
                    # Counted out before Complete: the broker frees the slot only then.
                    running[key_of(job)] -= 1
                    await own.Complete(
                        pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token)
                    )
                    done.append(job.job.id)

    started = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(20))), 120)
    print(f"2000 keyed jobs in {time.monotonic() - started:.1f} s, {most_at_once} keys at once")
    assert overlaps == []
    assert len(done) == len(set(done)) == 2000
    assert most_at_once > 1, "keys should run side by side"
    c = await counts(broker)
    assert (c.ready, c.active, c.completed) == (0, 0, 2000)
    await assert_no_key_left_in_line(redis, prefix)


async def test_an_idle_keys_job_is_not_delayed_behind_a_busy_key(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    await enqueue_many(stub, [keyed("busy", 1) for _ in range(1000)])
    leased_at: dict[str, float] = {}
    stop = asyncio.Event()

    async def worker() -> None:
        async with stub_for(broker.port) as own:
            while not stop.is_set():
                jobs = (await own.Lease(pb.LeaseRequest(queue="q", wait=ms(500)))).jobs
                for job in jobs:
                    leased_at.setdefault(key_of(job), time.monotonic())
                    await asyncio.sleep(0.02)  # the busy key alone would need 20 s
                    await own.Complete(
                        pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token)
                    )

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    try:
        await asyncio.sleep(0.3)
        enqueued = time.monotonic()
        await stub.Enqueue(pb.EnqueueRequest(queue="q", job=keyed("idle", 1)))
        for _ in range(200):
            if "idle" in leased_at:
                break
            await asyncio.sleep(0.01)
        waited = leased_at["idle"] - enqueued
        print(f"the idle key's job was leased {waited * 1000:.0f} ms after its enqueue")
        assert waited < 1.0, f"the idle key's job waited {waited:.2f} s"
    finally:
        stop.set()
        await asyncio.gather(*workers)


async def test_keys_hold_across_two_broker_processes_with_abandoned_leases(
    redis_server: RedisServer, redis: Redis, prefix: str
) -> None:
    """Two `jobwire serve` processes on one Valkey, workers on both, and every 15th lease
    abandoned as by a SIGKILLed worker (no heartbeat, no settle: the slot stays taken
    until the lease expires). Accounting: every job completed exactly once, never two
    live jobs of one key at once, every slot given back."""
    replicas = [
        BrokerProcess("--redis-url", redis_server.url, "--key-prefix", prefix) for _ in "ab"
    ]
    try:
        async with stub_for(replicas[0].port) as stub:
            specs = [
                keyed(
                    f"k{i % 12}",
                    1,
                    payload=str(i).encode(),
                    max_attempts=10,
                    lease_duration=ms(1000),
                )
                for i in range(240)
            ]
            ids = await enqueue_many(stub, specs)
        running: Counter[str] = Counter()
        overlaps: list[str] = []
        completed: Counter[str] = Counter()
        leases = 0

        async def worker(n: int) -> None:
            nonlocal leases
            async with stub_for(replicas[n % 2].port) as own:
                while sum(completed.values()) < len(ids):
                    reply = await own.Lease(pb.LeaseRequest(queue="q", wait=ms(300)))
                    for job in reply.jobs:
                        leases += 1
                        if leases % 15 == 0:
                            continue  # abandoned: the broker takes it back at expiry
                        key = key_of(job)
                        running[key] += 1
                        if running[key] > 1:
                            overlaps.append(key)
                        await asyncio.sleep(0.002)
                        running[key] -= 1
                        await own.Complete(
                            pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token)
                        )
                        completed[job.job.id] += 1

        await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(8))), 120)
    finally:
        for replica in replicas:
            assert replica.terminate() == 0
    assert overlaps == []
    assert set(completed) == set(ids) and set(completed.values()) == {1}
    assert leases > len(ids), "some leases were abandoned and taken back"
    await assert_no_key_left_in_line(redis, prefix)


# -- leasing -------------------------------------------------------------------------------


async def test_lease_skips_a_key_at_its_limit_and_serves_keys_round_robin(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    for key, n in (("a", 6), ("b", 3), ("c", 3)):
        for _ in range(n):
            await enqueue(stub, **{"concurrency_key": key, "concurrency_limit": 2})
    jobs = await lease(stub, n=10)
    # Two of each key (their limit), in turns: a, b, c, a, b, c.
    assert [key_of(j) for j in jobs] == ["a", "b", "c", "a", "b", "c"]
    assert await lease(stub) == []
    c = await counts(broker)
    assert (c.ready, c.active) == (6, 6)


async def test_keyed_and_unkeyed_jobs_share_a_lease_by_priority_then_age(
    stub: rpc.BrokerServiceStub,
) -> None:
    # Each pick compares the unkeyed head with the head of the key next in turn; keys
    # themselves take turns (round-robin), whatever their heads' priorities.
    first = await enqueue(stub, concurrency_key="k")
    second = await enqueue(stub)
    urgent = await enqueue(stub, concurrency_key="k2", priority=5)
    later = await enqueue(stub, concurrency_key="k")  # k is at its limit of 1
    third = await enqueue(stub)
    top = await enqueue(stub, priority=9)
    jobs = await lease(stub, n=10)
    assert [j.job.id for j in jobs] == [top, first, urgent, second, third]
    assert later not in [j.job.id for j in jobs]


async def test_priority_and_fifo_within_a_key(stub: rpc.BrokerServiceStub) -> None:
    low = await enqueue(stub, concurrency_key="k", priority=-1)
    a = await enqueue(stub, concurrency_key="k")
    b = await enqueue(stub, concurrency_key="k")
    high = await enqueue(stub, concurrency_key="k", priority=3)
    order = []
    for _ in range(4):
        (job,) = await lease(stub)
        order.append(job.job.id)
        await stub.Complete(pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token))
    assert order == [high, a, b, low]


async def test_the_limit_defaults_to_the_queues_setting_else_one(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    await enqueue(stub, concurrency_key="k")
    (job,) = await lease(stub)
    assert job.job.spec.concurrency_limit == 1
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        admin = arpc.AdminServiceStub(channel)
        reply = await admin.UpdateQueue(
            apb.UpdateQueueRequest(
                queue="q",
                settings=apb.QueueSettings(concurrency_limit=3),
                update_mask=FieldMask(paths=["concurrency_limit"]),
            )
        )
        assert reply.queue.settings.concurrency_limit == 3
        got = await admin.GetQueue(apb.GetQueueRequest(queue="q"))
        assert got.queue.effective_settings.concurrency_limit == 3
    for _ in range(4):
        await enqueue(stub, concurrency_key="j")
    assert len(await lease(stub, n=10)) == 3
    unkeyed = await enqueue(stub, concurrency_limit=5)  # ignored without a key
    (job,) = await lease(stub)
    assert job.job.id == unkeyed and job.job.spec.concurrency_limit == 0


# -- every way out of 'active' frees the slot ----------------------------------------------


async def leased_pair(stub: rpc.BrokerServiceStub, **spec: object) -> tuple[pb.LeasedJob, str]:
    """The first of two jobs of key k leased; the second is held back by the limit."""
    await enqueue(stub, concurrency_key="k", **spec)  # type: ignore[arg-type]
    nxt = await enqueue(stub, concurrency_key="k")
    (job,) = await lease(stub, n=5)
    assert await lease(stub) == []
    return job, nxt


async def test_complete_frees_the_slot(stub: rpc.BrokerServiceStub) -> None:
    job, nxt = await leased_pair(stub)
    await stub.Complete(pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token))
    assert [j.job.id for j in await lease(stub)] == [nxt]


async def test_fail_frees_the_slot(stub: rpc.BrokerServiceStub) -> None:
    job, nxt = await leased_pair(stub)
    await stub.Fail(
        pb.FailRequest(
            job_id=job.job.id, lease_token=job.lease_token, error=job_pb2.JobError(type="E")
        )
    )
    assert [j.job.id for j in await lease(stub)] == [nxt]


async def test_release_frees_the_slot(stub: rpc.BrokerServiceStub) -> None:
    job, nxt = await leased_pair(stub)
    await stub.ReleaseLease(
        pb.ReleaseLeaseRequest(job_id=job.job.id, lease_token=job.lease_token, delay=ms(60_000))
    )
    assert [j.job.id for j in await lease(stub)] == [nxt]


async def test_an_expired_lease_frees_the_slot(stub: rpc.BrokerServiceStub) -> None:
    _, nxt = await leased_pair(stub, lease_duration=ms(1_000), max_attempts=1)
    start = time.monotonic()
    (again,) = await lease(stub, wait_ms=8_000)  # after the expiry, taken by maintenance
    assert again.job.id == nxt and time.monotonic() - start >= 0.5


async def test_a_cancelled_active_job_frees_the_slot_when_its_worker_stops(
    stub: rpc.BrokerServiceStub,
) -> None:
    job, nxt = await leased_pair(stub)
    await stub.CancelJob(pb.CancelJobRequest(job_id=job.job.id))
    assert await lease(stub) == []  # still running until its worker hears of it
    reply = await stub.Fail(
        pb.FailRequest(
            job_id=job.job.id, lease_token=job.lease_token, error=job_pb2.JobError(type="Stop")
        )
    )
    assert reply.state == job_pb2.JOB_STATE_CANCELLED
    assert [j.job.id for j in await lease(stub)] == [nxt]


async def test_cancel_delete_and_drain_of_ready_keyed_jobs(
    stub: rpc.BrokerServiceStub, broker: BrokerApp, redis: Redis, prefix: str
) -> None:
    a = await enqueue(stub, concurrency_key="k")
    b = await enqueue(stub, concurrency_key="k")
    await enqueue(stub, concurrency_key="other")
    await stub.CancelJob(pb.CancelJobRequest(job_id=a))
    assert (await counts(broker)).ready == 2
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        admin = arpc.AdminServiceStub(channel)
        listed = await admin.ListJobs(apb.ListJobsRequest(queue="q", state=job_pb2.JOB_STATE_READY))
        assert len(listed.jobs) == 2
        await admin.DeleteJobs(apb.DeleteJobsRequest(queue="q", job_ids=[b]))
        assert [key_of(j) for j in await lease(stub, n=5)] == ["other"]
        await enqueue(stub, concurrency_key="k")
        await admin.DrainQueue(apb.DrainQueueRequest(queue="q"))
        assert await lease(stub, n=5) == []
        await admin.DeleteQueue(apb.DeleteQueueRequest(queue="q", force=True))
    # Only the sequence counter outlives a queue (job ids are never reused).
    assert await redis.keys(f"{prefix}:{{q}}:*") == [f"{prefix}:{{q}}:seq".encode()]


async def test_a_retried_dead_job_rejoins_its_key(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    job, nxt = await leased_pair(stub)
    await stub.Fail(
        pb.FailRequest(
            job_id=job.job.id,
            lease_token=job.lease_token,
            error=job_pb2.JobError(type="Fatal", non_retryable=True),
        )
    )
    (second,) = await lease(stub)
    assert second.job.id == nxt
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        admin = arpc.AdminServiceStub(channel)
        await admin.RetryJobs(apb.RetryJobsRequest(queue="q", job_ids=[job.job.id]))
    assert await lease(stub) == []  # key k still runs `nxt`
    await stub.Complete(pb.CompleteRequest(job_id=nxt, lease_token=second.lease_token))
    assert [j.job.id for j in await lease(stub)] == [job.job.id]


# -- bad input writes nothing --------------------------------------------------------------

ENQUEUE_CASES = {
    "key_257_bytes": ({"concurrency_key": "k" * 257}, ["job.concurrency_key"]),
    "limit_negative": (
        {"concurrency_key": "k", "concurrency_limit": -1},
        ["job.concurrency_limit"],
    ),
    "limit_over_10000": (
        {"concurrency_key": "k", "concurrency_limit": 10_001},
        ["job.concurrency_limit"],
    ),
}


@pytest.mark.parametrize(("spec", "fields"), ENQUEUE_CASES.values(), ids=ENQUEUE_CASES.keys())
async def test_enqueue_rejects_bad_concurrency_options(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,  # noqa: F811
    spec: dict[str, object],
    fields: list[str],
) -> None:
    request = pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x", **spec))  # type: ignore[arg-type]
    await refused(redis, prefix, lambda: stub.Enqueue(request), fields)


def test_the_band_of_keyed_jobs_is_above_every_ready_score() -> None:
    found = re.search(r"GROUP_BAND = (\d+)", script_source("lib"))
    assert found
    band = int(found.group(1))
    # ready_score is (1000 - priority) * 2^40 + seq: its largest, at the lowest priority
    # and a seq below 2^40, must stay below the band, and band + score below 2^53, where
    # doubles stop holding every integer.
    lowest = -Limits().max_priority
    largest = (1000 - lowest) * 2**40 + 2**40
    assert largest < band and band + largest < 2**53
