"""Settlements that survive lost replies (issue 14): a Complete, Fail, ReleaseLease or
SettleBatch retried with the same token after the first call succeeded, its reply lost
on the way back, gets the first outcome again and writes nothing, over real gRPC and
Valkey. A different token, or the same one after the replay window, is LEASE_LOST."""

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from helpers import enqueue, get, lease
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from redis.asyncio import Redis

pytestmark = pytest.mark.redis_matrix


async def events(redis: Redis, prefix: str) -> int:
    return int(await redis.xlen(f"{prefix}:{{q}}:qevents"))


async def test_a_retried_complete_answers_ok_and_writes_nothing(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    job_id = await enqueue(stub)
    (leased,) = await lease(stub)
    request = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token, result=b"1")
    await stub.Complete(request)
    before = (await get(stub, job_id), await events(redis, prefix))
    retry = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token, result=b"2")
    await stub.Complete(retry)  # OK, not LEASE_LOST
    assert (await get(stub, job_id), await events(redis, prefix)) == before
    assert before[0].result == b"1"

    stranger = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token + "x")
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await stub.Complete(stranger)
    assert lost.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_retried_fail_gets_the_first_fail_response(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    job_id = await enqueue(stub, max_attempts=3)
    (leased,) = await lease(stub)
    request = pb.FailRequest(
        job_id=job_id,
        lease_token=leased.lease_token,
        error=job_pb2.JobError(type="E", message="boom"),
        retry_delay=Duration(seconds=30),
    )
    first = await stub.Fail(request)
    before = (await get(stub, job_id), await events(redis, prefix))
    again = await stub.Fail(request)
    assert again == first and first.state == job_pb2.JOB_STATE_SCHEDULED
    assert (await get(stub, job_id), await events(redis, prefix)) == before
    assert before[0].counted_attempts == 1


async def test_a_retried_settle_batch_gets_each_items_first_outcome(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    ids = [await enqueue(stub) for _ in range(3)]
    jobs = {j.job.id: j for j in await lease(stub, n=3)}
    a, b, c = (jobs[i] for i in ids)
    batch = pb.SettleBatchRequest(
        settlements=[
            pb.Settlement(complete=pb.CompleteRequest(job_id=a.job.id, lease_token=a.lease_token)),
            pb.Settlement(
                fail=pb.FailRequest(
                    job_id=b.job.id,
                    lease_token=b.lease_token,
                    error=job_pb2.JobError(type="E", non_retryable=True),
                )
            ),
            pb.Settlement(
                release=pb.ReleaseLeaseRequest(job_id=c.job.id, lease_token=c.lease_token)
            ),
        ]
    )
    first = await stub.SettleBatch(batch)
    assert [r.status.code for r in first.results] == [0, 0, 0]
    assert first.results[1].fail.state == job_pb2.JOB_STATE_DEAD
    before = ([await get(stub, i) for i in ids], await events(redis, prefix))
    again = await stub.SettleBatch(batch)
    assert again == first
    assert ([await get(stub, i) for i in ids], await events(redis, prefix)) == before
