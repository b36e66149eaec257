"""Big jobs through real gRPC: a Lease reply never carries more than the caller can
read, and a reply that is not delivered gives its jobs back uncharged."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp

pytestmark = pytest.mark.redis_matrix

MIB = 1 << 20
Q = "big"


async def enqueue_big(stub: rpc.BrokerServiceStub, n: int, size: int = MIB) -> list[str]:
    ids = []
    for i in range(n):
        payload = bytes([i % 256]) * size
        r = await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec(payload=payload)))
        ids.append(r.job_id)
    return ids


async def jobs(stub: rpc.BrokerServiceStub, ids: list[str]) -> list[job_pb2.Job]:
    return [(await stub.GetJob(pb.GetJobRequest(job_id=i))).job for i in ids]


@pytest.fixture
async def big_stub(broker: BrokerApp) -> AsyncIterator[rpc.BrokerServiceStub]:
    """A producer channel that can send 1 MiB jobs (gRPC's default send limit is fine,
    receive is raised for GetJob of big jobs)."""
    options = [("grpc.max_receive_message_length", 64 * MIB)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}", options=options) as ch:
        yield rpc.BrokerServiceStub(ch)


async def test_a_default_client_leases_big_jobs_in_replies_it_can_read(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, big_stub: rpc.BrokerServiceStub
) -> None:
    """`stub` keeps gRPC's default 4 MiB receive limit, as grpcurl or a worker written
    from the protos would: every reply fits it, and all 10 jobs are delivered."""
    ids = await enqueue_big(big_stub, 10)
    delivered: list[str] = []
    while len(delivered) < 10:
        reply = await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=10))
        assert 1 <= len(reply.jobs) <= 3 and reply.ByteSize() <= 4 * MIB
        for held in reply.jobs:
            assert held.job.spec.payload == bytes([int(held.job.id.split(":")[1]) - 1]) * MIB
            delivered.append(held.job.id)
            await stub.Complete(
                pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token)
            )
    assert sorted(delivered) == sorted(ids)
    assert {j.state for j in await jobs(big_stub, ids)} == {job_pb2.JOB_STATE_COMPLETED}
    assert {j.attempt for j in await jobs(big_stub, ids)} == {1}


async def test_max_response_bytes_raises_the_cap_up_to_the_broker_limit(
    broker: BrokerApp, big_stub: rpc.BrokerServiceStub
) -> None:
    await enqueue_big(big_stub, 10)
    reply = await big_stub.Lease(
        pb.LeaseRequest(queue=Q, max_jobs=10, max_response_bytes=2**31 - 1)
    )
    # The broker's own send limit is 4 x 1 MiB + 4 MiB: 7 jobs and their fields fit.
    assert len(reply.jobs) == 7
    assert reply.ByteSize() <= broker.settings.max_message_bytes


async def test_a_job_larger_than_the_reply_cap_stays_ready_and_the_error_says_why(
    broker: BrokerApp, big_stub: rpc.BrokerServiceStub
) -> None:
    (job_id,) = await enqueue_big(big_stub, 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await big_stub.Lease(pb.LeaseRequest(queue=Q, max_response_bytes=MIB))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.reason == "JOB_TOO_LARGE"
    assert job_id in caught.value.details()
    (job,) = await jobs(big_stub, [job_id])
    assert (job.state, job.attempt) == (job_pb2.JOB_STATE_READY, 0)
    # The same job under the default cap is delivered.
    reply = await big_stub.Lease(pb.LeaseRequest(queue=Q, wait={"seconds": 1}))
    assert [j.job.id for j in reply.jobs] == [job_id]


async def test_a_reply_over_the_cap_hands_the_extra_jobs_back_uncharged(
    broker: BrokerApp,
    stub: rpc.BrokerServiceStub,
    big_stub: rpc.BrokerServiceStub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lease script's size estimate is an upper bound; should it ever be wrong, the
    servicer trims the reply to the cap and hands the rest back: none is left active or
    charged an attempt. Here the script is given twice the budget to make it wrong."""
    store = broker.broker.store
    lease = store.lease

    async def generous(queue: str, max_jobs: int, flag_ms: int, max_bytes: int, *rest: Any) -> Any:
        return await lease(queue, max_jobs, flag_ms, max_bytes * 2, *rest)

    monkeypatch.setattr(store, "lease", generous)
    ids = await enqueue_big(big_stub, 10)
    reply = await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=10))  # default 4 MiB reader
    assert len(reply.jobs) == 3 and reply.ByteSize() <= 4 * MIB
    held = {j.job.id for j in reply.jobs}
    for job in await jobs(big_stub, ids):
        if job.id in held:
            assert (job.state, job.counted_attempts) == (job_pb2.JOB_STATE_ACTIVE, 1)
        else:
            assert (job.state, job.counted_attempts) == (job_pb2.JOB_STATE_READY, 0)


async def test_a_long_poll_woken_by_a_big_job_caps_the_reply_too(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, big_stub: rpc.BrokerServiceStub
) -> None:
    waiting = asyncio.ensure_future(
        stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=10, wait={"seconds": 10}))
    )
    await asyncio.sleep(0.3)
    ids = await enqueue_big(big_stub, 5)
    reply = await waiting
    assert 1 <= len(reply.jobs) <= 3
    assert [j.job.id for j in reply.jobs] == ids[: len(reply.jobs)]
