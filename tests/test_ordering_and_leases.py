"""Acceptance 2 and 3: priority then FIFO, delayed jobs on time, and lease fencing."""

import asyncio
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from helpers import enqueue, get, lease, millis, ms
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2

pytestmark = pytest.mark.redis_matrix


async def test_priority_first_then_fifo(stub: rpc.BrokerServiceStub) -> None:
    order = [("a", 0), ("b", 5), ("c", 0), ("d", -3), ("e", 5), ("f", 1000), ("g", -1000)]
    for name, priority in order:
        await enqueue(stub, payload=name.encode(), priority=priority)
    leased = await lease(stub, n=10)
    assert [j.job.spec.payload.decode() for j in leased] == ["f", "b", "e", "a", "c", "d", "g"]


async def test_delayed_job_is_not_leased_early_and_is_leased_when_due(
    stub: rpc.BrokerServiceStub,
) -> None:
    job_id = await enqueue(stub, delay=ms(600))
    assert await lease(stub) == []
    due = millis((await get(stub, job_id)).run_time)
    (held,) = await lease(stub, wait_ms=5_000)  # waits for the due time, no maintenance needed
    started = millis(held.job.start_time)
    assert due <= started < due + 500


async def test_run_time_in_the_past_is_ready_now(stub: rpc.BrokerServiceStub) -> None:
    await enqueue(stub, run_time=Timestamp(seconds=int(time.time()) - 60))
    assert len(await lease(stub)) == 1


async def test_a_live_lease_is_never_handed_out_twice(stub: rpc.BrokerServiceStub) -> None:
    await stub.EnqueueBatch(
        pb.EnqueueBatchRequest(queue="q", jobs=[job_pb2.JobSpec(payload=b"x") for _ in range(200)])
    )
    batches = await asyncio.gather(*(lease(stub, n=7) for _ in range(40)))
    ids = [j.job.id for batch in batches for j in batch]
    assert len(ids) == len(set(ids)) == 200
    assert await lease(stub) == []


async def test_expired_lease_is_leased_again_and_the_old_holder_is_fenced(
    stub: rpc.BrokerServiceStub,
) -> None:
    job_id = await enqueue(
        stub,
        lease_duration=ms(1_000),
        max_attempts=5,
        backoff=job_pb2.BackoffPolicy(kind=job_pb2.BACKOFF_KIND_FIXED, initial_delay=ms(0)),
    )
    (first,) = await lease(stub)
    assert await lease(stub) == []  # alive: nobody else gets it
    (second,) = await lease(stub, wait_ms=5_000)  # after expiry and maintenance
    assert second.job.id == job_id
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.lease_token != first.lease_token
    assert (await get(stub, job_id)).last_error.type == "LEASE_EXPIRED"

    before = await get(stub, job_id)
    stale = [
        stub.Heartbeat(
            pb.HeartbeatRequest(
                job_id=job_id, lease_token=first.lease_token, progress=job_pb2.Progress(percent=99)
            )
        ),
        stub.Complete(
            pb.CompleteRequest(job_id=job_id, lease_token=first.lease_token, result=b"stale")
        ),
        stub.Fail(
            pb.FailRequest(
                job_id=job_id,
                lease_token=first.lease_token,
                error=job_pb2.JobError(type="E", non_retryable=True),
            )
        ),
    ]
    for call in stale:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "lease" in (err.value.details() or "")
    assert await get(stub, job_id) == before

    await stub.Complete(pb.CompleteRequest(job_id=job_id, lease_token=second.lease_token))
    assert (await get(stub, job_id)).state == job_pb2.JOB_STATE_COMPLETED


async def test_a_release_keeps_the_attempt_number_growing_but_does_not_count(
    stub: rpc.BrokerServiceStub,
) -> None:
    """Defect 5 of issue 8: `attempt` fences side effects, so it grows with every lease,
    released ones too; `counted_attempts` is what max_attempts limits."""
    job_id = await enqueue(stub, max_attempts=2)
    attempts = []
    for _ in range(3):  # three releases in a row never bring the job closer to dead
        (held,) = await lease(stub)
        attempts.append(held.attempt)
        await stub.Fail(pb.FailRequest(job_id=job_id, lease_token=held.lease_token, release=True))
    job = await get(stub, job_id)
    assert (job.state, job.attempt, job.counted_attempts) == (job_pb2.JOB_STATE_READY, 3, 0)
    (held,) = await lease(stub)
    attempts.append(held.attempt)
    assert attempts == [1, 2, 3, 4]
    assert (await get(stub, job_id)).counted_attempts == 1
    error = job_pb2.JobError(type="Boom")
    reply = await stub.Fail(
        pb.FailRequest(job_id=job_id, lease_token=held.lease_token, error=error)
    )
    assert reply.state == job_pb2.JOB_STATE_SCHEDULED  # 1 of 2 counted: retried
    (held,) = await lease(stub, wait_ms=3_000)
    assert held.attempt == 5
    reply = await stub.Fail(
        pb.FailRequest(job_id=job_id, lease_token=held.lease_token, error=error)
    )
    assert reply.state == job_pb2.JOB_STATE_DEAD  # 2 of 2 counted
    job = await get(stub, job_id)
    assert (job.attempt, job.counted_attempts) == (5, 2)


async def test_release_lease_hands_a_job_back_after_its_delay(
    stub: rpc.BrokerServiceStub,
) -> None:
    """ReleaseLease is its own transition; SettleBatch carries releases too, and the
    deprecated Fail(release=true) still works as one."""
    job_id = await enqueue(stub, max_attempts=1)
    (held,) = await lease(stub)
    reply = await stub.ReleaseLease(
        pb.ReleaseLeaseRequest(job_id=job_id, lease_token=held.lease_token, delay=ms(300))
    )
    assert reply.state == job_pb2.JOB_STATE_SCHEDULED
    assert millis(reply.ready_time) >= millis(held.job.start_time) + 300
    assert await lease(stub) == []
    (held,) = await lease(stub, wait_ms=3_000)
    settled = await stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[
                pb.Settlement(
                    release=pb.ReleaseLeaseRequest(job_id=job_id, lease_token=held.lease_token)
                )
            ]
        )
    )
    (result,) = settled.results
    assert (result.status.code, result.release.state) == (0, job_pb2.JOB_STATE_READY)
    (held,) = await lease(stub)
    await stub.Fail(pb.FailRequest(job_id=job_id, lease_token=held.lease_token, release=True))
    job = await get(stub, job_id)
    assert (job.state, job.attempt, job.counted_attempts) == (job_pb2.JOB_STATE_READY, 3, 0)
