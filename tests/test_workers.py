"""The worker registry and ListWorkers (issue 10, acceptance 6): a live worker shows up
active with its jobs in flight, an idle one idle, and a SIGKILLed one gone once its
leases expired and were taken back. Also: records merged across queues, the one-minute
rule, long-polls keeping a waiting worker fresh, pruning after an hour, and bad input
(acceptance 7) writing nothing. Real broker, real Valkey, real worker processes."""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import grpc
import pytest
from helpers import millis, ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.maintenance import MaintenanceSettings
from jobwire_broker.domain.workers import GONE_AFTER_MS, WorkerState, state_of
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import ROOT, RedisServer, broker_settings, eventually, running_broker, unique_prefix
from test_bad_input import assert_unchanged, rejected, snapshot

W = apb.WorkerState
NOW = 1_800_000_000_000


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


async def workers(
    admin: arpc.AdminServiceStub, queue: str = "", include_gone: bool = False
) -> dict[str, apb.Worker]:
    reply = await admin.ListWorkers(apb.ListWorkersRequest(queue=queue, include_gone=include_gone))
    ids = [w.worker_id for w in reply.workers]
    assert ids == sorted(ids), "listed by worker id"
    return {w.worker_id: w for w in reply.workers}


def key(prefix: str, queue: str, name: str) -> str:
    return f"{prefix}:{{{queue}}}:{name}"


async def redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


# -- the state rule ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("in_flight", "seen_ago_ms", "expired_ago_ms", "state"),
    [
        (2, 1_000, None, WorkerState.ACTIVE),
        # A lease held: active however long since its last call (long jobs, long leases).
        (1, 10 * GONE_AFTER_MS, None, WorkerState.ACTIVE),
        (1, 1_000, 500, WorkerState.ACTIVE),
        (0, 1_000, None, WorkerState.IDLE),
        (0, GONE_AFTER_MS - 1, None, WorkerState.IDLE),
        (0, GONE_AFTER_MS, None, WorkerState.GONE),
        # Its leases ran out after it was last seen: gone at once.
        (0, 5_000, 1_000, WorkerState.GONE),
        (0, 5_000, 5_000, WorkerState.GONE),
        # It called again after they ran out: back.
        (0, 1_000, 5_000, WorkerState.IDLE),
    ],
)
def test_worker_state_rule(
    in_flight: int, seen_ago_ms: int, expired_ago_ms: int | None, state: WorkerState
) -> None:
    expired = 0 if expired_ago_ms is None else NOW - expired_ago_ms
    assert state_of(in_flight, NOW - seen_ago_ms, expired, NOW) is state


# -- acceptance 6: real workers, one SIGKILLed ------------------------------------------

WORKER = """
import asyncio, os
from jobwire import Job, Worker

worker = Worker(
    os.environ["JOBWIRE_TARGET"],
    concurrency=int(os.environ["CONCURRENCY"]),
    prefetch=0,
    lease_wait=1,
    worker_id=os.environ["WORKER_ID"],
)


@worker.handler(os.environ["QUEUE"])
async def hold(job: Job) -> str:
    await asyncio.sleep(3600)  # holds its lease (heartbeating) until killed
    return "never"


asyncio.run(worker.run())
"""


@contextlib.contextmanager
def worker_process(
    target: str, worker_id: str, queue: str, concurrency: int
) -> Iterator[subprocess.Popen[bytes]]:
    """The Python SDK's Worker in a process of its own, so the test can SIGKILL it."""
    env = {
        **os.environ,
        "JOBWIRE_TARGET": target,
        "WORKER_ID": worker_id,
        "QUEUE": queue,
        "CONCURRENCY": str(concurrency),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER], env=env, cwd=ROOT, stdout=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


async def test_a_live_worker_is_active_and_a_sigkilled_one_gone_after_its_leases_expire(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    target = f"127.0.0.1:{broker.port}"
    spec = job_pb2.JobSpec(payload=b"x", lease_duration=ms(2_000))
    batch = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="work", jobs=[spec] * 5))
    work_ids = [r.job_id for r in batch.results]
    # The idle worker's queue must exist to be listed: give it a job due in an hour.
    later = job_pb2.JobSpec(payload=b"later", delay=ms(3_600_000))
    await stub.Enqueue(pb.EnqueueRequest(queue="idle", job=later))

    with (
        worker_process(target, "doomed", "work", concurrency=3) as doomed,
        worker_process(target, "idler", "idle", concurrency=1),
    ):

        async def both_up() -> bool:
            found = await workers(admin)
            return (
                "doomed" in found
                and found["doomed"].in_flight == 3
                and found["doomed"].HasField("last_heartbeat_time")
                and "idler" in found
            )

        await eventually(both_up, timeout_s=30, every_s=0.1)
        found = await workers(admin)
        assert found["doomed"].state == W.WORKER_STATE_ACTIVE
        assert list(found["doomed"].queues) == ["work"]
        assert found["idler"].state == W.WORKER_STATE_IDLE
        assert found["idler"].in_flight == 0 and list(found["idler"].queues) == ["idle"]
        assert not found["idler"].HasField("last_heartbeat_time")
        assert list(await workers(admin, "work")) == ["doomed"]
        assert list(await workers(admin, "idle")) == ["idler"]

        # Heartbeats keep its three leases alive well past their 2 s duration.
        await asyncio.sleep(2.5)
        found = await workers(admin)
        assert found["doomed"].state == W.WORKER_STATE_ACTIVE and found["doomed"].in_flight == 3
        held = [j for j in await jobs(stub, work_ids) if j.state == job_pb2.JOB_STATE_ACTIVE]
        assert len(held) == 3 and {j.worker_id for j in held} == {"doomed"}
        assert all(j.attempt == 1 for j in held)

        doomed.kill()  # SIGKILL: no shutdown, its leases are left to expire
        doomed.wait()
        killed_at = time.monotonic()

        async def doomed_gone() -> bool:
            found = await workers(admin, include_gone=True)
            return found["doomed"].state == W.WORKER_STATE_GONE

        await eventually(doomed_gone, timeout_s=15, every_s=0.05)
        gone_after_s = time.monotonic() - killed_at
        found = await workers(admin, include_gone=True)
        assert found["doomed"].in_flight == 0
        assert "doomed" not in await workers(admin), "gone workers only with include_gone"
        assert found["idler"].state == W.WORKER_STATE_IDLE
        # Gone because maintenance took its leases back, not because a minute passed.
        assert gone_after_s < 10
        after = await jobs(stub, [j.id for j in held])
        assert all(j.state != job_pb2.JOB_STATE_ACTIVE for j in after)
        assert {j.last_error.type for j in after} == {"LEASE_EXPIRED"}


async def jobs(stub: rpc.BrokerServiceStub, ids: list[str]) -> list[job_pb2.Job]:
    return [(await stub.GetJob(pb.GetJobRequest(job_id=i))).job for i in ids]


# -- how the registry is kept -----------------------------------------------------------


async def test_a_long_polling_lease_keeps_its_worker_fresh(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    """A Lease that waits re-runs lease.lua every ~2 s (domain/broker.py), each time
    with the caller's worker_id, so a worker waiting for work keeps showing as idle."""
    later = job_pb2.JobSpec(payload=b"later", delay=ms(3_600_000))
    await stub.Enqueue(pb.EnqueueRequest(queue="lp", job=later))
    record = key(prefix, "lp", "worker:poller")
    polling = asyncio.ensure_future(
        stub.Lease(pb.LeaseRequest(queue="lp", wait=ms(3_000), worker_id="poller"))
    )

    async def first_run() -> bool:
        return await redis.hget(record, "last_lease_ms") is not None

    await eventually(first_run, timeout_s=5)
    first = int(await redis.hget(record, "last_lease_ms"))

    # (It runs twice at once, before and after subscribing, then every ~2 s.)
    async def rerun() -> bool:
        return int(await redis.hget(record, "last_lease_ms")) - first >= 1_500

    await eventually(rerun, timeout_s=4)
    rerun_at = int(await redis.hget(record, "last_lease_ms"))
    assert not polling.done(), "still waiting: the re-run, not a new Lease, saw the worker"
    found = await workers(admin, "lp")
    assert found["poller"].state == W.WORKER_STATE_IDLE
    assert millis(found["poller"].last_lease_time) == rerun_at
    assert await redis.zscore(key(prefix, "lp", "workers"), "poller") == rerun_at
    assert list((await polling).jobs) == []


async def test_records_merge_across_queues_and_follow_settlements(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    for q in ("q1", "q2"):
        await stub.EnqueueBatch(
            pb.EnqueueBatchRequest(queue=q, jobs=[job_pb2.JobSpec(payload=b"x")] * 2)
        )
    (a,) = (await stub.Lease(pb.LeaseRequest(queue="q1", worker_id="multi"))).jobs
    (b,) = (await stub.Lease(pb.LeaseRequest(queue="q2", worker_id="multi"))).jobs
    (c,) = (await stub.Lease(pb.LeaseRequest(queue="q2", worker_id="other"))).jobs
    await stub.Heartbeat(pb.HeartbeatRequest(job_id=b.job.id, lease_token=b.lease_token))

    found = await workers(admin)
    multi = found["multi"]
    assert list(multi.queues) == ["q1", "q2"] and multi.in_flight == 2
    assert multi.state == W.WORKER_STATE_ACTIVE
    assert millis(multi.last_heartbeat_time) >= millis(multi.last_lease_time)
    assert list(found["other"].queues) == ["q2"] and found["other"].in_flight == 1
    # Filtered by queue, a worker is still described whole.
    assert list(await workers(admin, "q1")) == ["multi"]
    assert (await workers(admin, "q1"))["multi"] == multi
    assert list(await workers(admin, "q2")) == ["multi", "other"]

    await stub.Complete(pb.CompleteRequest(job_id=a.job.id, lease_token=a.lease_token))
    assert (await workers(admin))["multi"].in_flight == 1
    await stub.Fail(
        pb.FailRequest(job_id=b.job.id, lease_token=b.lease_token, error=job_pb2.JobError(type="E"))
    )
    await stub.ReleaseLease(pb.ReleaseLeaseRequest(job_id=c.job.id, lease_token=c.lease_token))
    found = await workers(admin)
    assert found["multi"].in_flight == 0 and found["multi"].state == W.WORKER_STATE_IDLE
    assert found["other"].in_flight == 0 and found["other"].state == W.WORKER_STATE_IDLE
    # A Lease without a worker_id is nobody's.
    await stub.Lease(pb.LeaseRequest(queue="q1"))
    assert sorted(await workers(admin, include_gone=True)) == ["multi", "other"]


async def test_silent_workers_go_after_a_minute_and_out_of_the_list_after_an_hour(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))
    now = await redis_ms(redis)
    records = {  # id: (last lease, last heartbeat, in flight, expired), ms ago or None
        "silent": (61_000, None, 0, None),
        "silent-holding": (300_000, 61_000, 2, None),
        "expired": (5_000, 3_000, 0, 1_000),
        "back": (1_000, None, 0, 5_000),
        "ancient": (2 * 3_600_000, None, 0, None),
    }
    for worker_id, (lease, beat, in_flight, expired) in records.items():
        fields = {"last_lease_ms": now - lease, "in_flight": in_flight}
        if beat is not None:
            fields["last_heartbeat_ms"] = now - beat
        if expired is not None:
            fields["expired_ms"] = now - expired
        await redis.hset(key(prefix, "q", f"worker:{worker_id}"), mapping=fields)
        seen = now - min(lease, beat if beat is not None else lease)
        await redis.zadd(key(prefix, "q", "workers"), {worker_id: seen})

    everyone = await workers(admin, include_gone=True)
    assert sorted(everyone) == ["back", "expired", "silent", "silent-holding"]
    assert {w: everyone[w].state for w in everyone} == {
        "silent": W.WORKER_STATE_GONE,
        "silent-holding": W.WORKER_STATE_ACTIVE,
        "expired": W.WORKER_STATE_GONE,
        "back": W.WORKER_STATE_IDLE,
    }
    assert millis(everyone["silent-holding"].last_heartbeat_time) == now - 61_000
    assert sorted(await workers(admin)) == ["back", "silent-holding"]


async def test_maintenance_forgets_workers_not_seen_for_an_hour(
    redis_server: RedisServer, redis: Redis
) -> None:
    prefix = unique_prefix()
    settings = broker_settings(
        redis_server.url, prefix, maintenance=MaintenanceSettings(prune_interval_s=0.1)
    )
    async with (
        running_broker(settings) as app,
        grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel,
    ):
        stub = rpc.BrokerServiceStub(channel)
        await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))
        await stub.Lease(pb.LeaseRequest(queue="q", worker_id="recent"))
        now = await redis_ms(redis)
        old = now - 3_600_000 - 1_000
        zset = key(prefix, "q", "workers")
        await redis.zadd(zset, {"old": old})
        await redis.hset(key(prefix, "q", "worker:old"), mapping={"last_lease_ms": old})

        async def forgotten() -> bool:
            return not await redis.exists(key(prefix, "q", "worker:old"))

        await eventually(forgotten, timeout_s=5)
        assert await redis.zrange(zset, 0, -1) == [b"recent"]
        assert await redis.exists(key(prefix, "q", "worker:recent"))


# -- bad input (acceptance 7) -----------------------------------------------------------


@pytest.fixture
async def seeded(stub: rpc.BrokerServiceStub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))
    await stub.Lease(pb.LeaseRequest(queue="q", worker_id="w1"))


@pytest.mark.parametrize("queue", ["a b", "-q", "q" * 129, "q:1", "é"])
async def test_list_workers_rejects_a_malformed_queue(
    admin: arpc.AdminServiceStub, redis: Redis, prefix: str, seeded: None, queue: str
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: admin.ListWorkers(apb.ListWorkersRequest(queue=queue, include_gone=True)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        ["queue"],
    )


async def test_list_workers_of_an_unknown_queue_is_not_found(
    admin: arpc.AdminServiceStub, redis: Redis, prefix: str, seeded: None
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: admin.ListWorkers(apb.ListWorkersRequest(queue="nope")),
        grpc.StatusCode.NOT_FOUND,
        "QUEUE_NOT_FOUND",
    )
    assert "nope" in err.message


async def test_list_workers_writes_nothing(
    admin: arpc.AdminServiceStub, redis: Redis, prefix: str, seeded: None
) -> None:
    before = await snapshot(redis, prefix)
    assert list(await workers(admin, include_gone=True)) == ["w1"]
    assert list(await workers(admin, "q")) == ["w1"]
    assert_unchanged(before, await snapshot(redis, prefix))
