"""Acceptance 4: observed retry delays follow the policy; dead letters keep their error."""

import pytest
from helpers import enqueue, get, lease, millis, ms
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2

pytestmark = pytest.mark.redis_matrix

SLACK_MS = 150  # time between the lease and the Fail call in this test


async def fail(stub: rpc.BrokerServiceStub, held: pb.LeasedJob, **error: object) -> pb.FailResponse:
    return await stub.Fail(
        pb.FailRequest(
            job_id=held.job.id,
            lease_token=held.lease_token,
            error=job_pb2.JobError(type="E", **error),
        )
    )


async def observed_delays(
    stub: rpc.BrokerServiceStub, policy: job_pb2.BackoffPolicy, retries: int
) -> list[int]:
    """Fails a job `retries` times; returns, per retry, the ms from the failed attempt's
    start to when the retry became due, and checks it is not leased before then."""
    await enqueue(stub, max_attempts=retries + 1, backoff=policy)
    delays = []
    (held,) = await lease(stub, wait_ms=5_000)
    for _ in range(retries):
        reply = await fail(stub, held)
        assert reply.state == job_pb2.JOB_STATE_SCHEDULED
        due = millis(reply.retry_time)
        delays.append(due - millis(held.job.start_time))
        (held,) = await lease(stub, wait_ms=10_000)
        assert millis(held.job.start_time) >= due
    await stub.Complete(pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token))
    return delays


def close(observed: list[int], expected: list[int]) -> bool:
    return all(e <= o <= e + SLACK_MS for o, e in zip(observed, expected, strict=True))


async def test_exponential_backoff_with_cap(stub: rpc.BrokerServiceStub) -> None:
    policy = job_pb2.BackoffPolicy(
        kind=job_pb2.BACKOFF_KIND_EXPONENTIAL,
        initial_delay=ms(100),
        multiplier=3,
        max_delay=ms(500),
    )
    delays = await observed_delays(stub, policy, 3)
    assert close(delays, [100, 300, 500]), delays


async def test_linear_backoff(stub: rpc.BrokerServiceStub) -> None:
    policy = job_pb2.BackoffPolicy(kind=job_pb2.BACKOFF_KIND_LINEAR, initial_delay=ms(150))
    delays = await observed_delays(stub, policy, 2)
    assert close(delays, [150, 300]), delays


async def test_fixed_backoff(stub: rpc.BrokerServiceStub) -> None:
    policy = job_pb2.BackoffPolicy(kind=job_pb2.BACKOFF_KIND_FIXED, initial_delay=ms(200))
    delays = await observed_delays(stub, policy, 2)
    assert close(delays, [200, 200]), delays


async def test_non_retryable_failure_goes_dead_with_its_error(
    stub: rpc.BrokerServiceStub,
) -> None:
    job_id = await enqueue(stub, max_attempts=5)
    (held,) = await lease(stub)
    reply = await fail(stub, held, message="wallet does not exist", non_retryable=True)
    assert reply.state == job_pb2.JOB_STATE_DEAD and not reply.HasField("retry_time")
    job = await get(stub, job_id)
    assert job.state == job_pb2.JOB_STATE_DEAD and job.attempt == 1
    assert job.last_error == job_pb2.JobError(
        type="E", message="wallet does not exist", non_retryable=True
    )


async def test_exhausted_job_goes_dead_with_its_last_error(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(
        stub,
        max_attempts=2,
        backoff=job_pb2.BackoffPolicy(kind=job_pb2.BACKOFF_KIND_FIXED, initial_delay=ms(0)),
    )
    (held,) = await lease(stub)
    assert (await fail(stub, held, message="first")).state == job_pb2.JOB_STATE_READY
    (held,) = await lease(stub)
    assert (await fail(stub, held, message="second")).state == job_pb2.JOB_STATE_DEAD
    job = await get(stub, job_id)
    assert (job.state, job.attempt, job.last_error.message) == (job_pb2.JOB_STATE_DEAD, 2, "second")
    assert await lease(stub) == []
