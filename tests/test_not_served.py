"""The protos' fields this broker does not serve yet (issue 11: per-key concurrency and
rate limits) are refused as their docs say, never silently ignored: INVALID_ARGUMENT
naming the field with nothing written."""

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.field_mask_pb2 import FieldMask
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from test_bad_input import INVALID, rejected

Q = "q"
BAD = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def channel(broker: BrokerApp) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as ch:
        yield ch


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (job_pb2.JobSpec(payload=b"x", concurrency_key="wallet:1"), "job.concurrency_key"),
        (job_pb2.JobSpec(payload=b"x", concurrency_limit=2), "job.concurrency_limit"),
    ],
)
async def test_concurrency_fields_are_refused(
    channel: grpc.aio.Channel, redis: Redis, prefix: str, spec: job_pb2.JobSpec, field: str
) -> None:
    stub = rpc.BrokerServiceStub(channel)
    await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec(payload=b"seed")))
    call = lambda: stub.Enqueue(pb.EnqueueRequest(queue=Q, job=spec))  # noqa: E731
    await rejected(redis, prefix, call, BAD, INVALID, [field])


async def test_rate_limit_delay_is_refused(
    channel: grpc.aio.Channel, redis: Redis, prefix: str
) -> None:
    stub = rpc.BrokerServiceStub(channel)
    await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec(payload=b"x")))
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q, worker_id="w", max_jobs=1))).jobs
    fail = pb.FailRequest(
        job_id=leased.job.id,
        lease_token=leased.lease_token,
        error=job_pb2.JobError(type="Limited", message="429"),
        rate_limit_delay=Duration(seconds=5),
    )
    await rejected(redis, prefix, lambda: stub.Fail(fail), BAD, INVALID, ["rate_limit_delay"])


@pytest.mark.parametrize(
    ("settings", "paths", "field"),
    [
        (apb.QueueSettings(concurrency_limit=3), [], "settings.concurrency_limit"),
        (apb.QueueSettings(rate_limit=apb.RateLimit(limit=10)), [], "settings.rate_limit"),
        (apb.QueueSettings(key_rate_limit=apb.RateLimit(limit=1)), [], "settings.key_rate_limit"),
        (apb.QueueSettings(), ["rate_limit"], "update_mask.paths[0]"),
    ],
)
async def test_rate_and_concurrency_settings_are_refused(
    channel: grpc.aio.Channel,
    redis: Redis,
    prefix: str,
    settings: apb.QueueSettings,
    paths: list[str],
    field: str,
) -> None:
    stub = rpc.BrokerServiceStub(channel)
    await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec(payload=b"seed")))
    admin = arpc.AdminServiceStub(channel)
    request = apb.UpdateQueueRequest(queue=Q, settings=settings, update_mask=FieldMask(paths=paths))
    await rejected(redis, prefix, lambda: admin.UpdateQueue(request), BAD, INVALID, [field])
