"""Small builders for raw-stub tests."""

from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2


def ms(n: int) -> Duration:
    return Duration(seconds=n // 1000, nanos=(n % 1000) * 1_000_000)


async def enqueue(
    stub: rpc.BrokerServiceStub, queue: str = "q", payload: bytes = b"{}", **spec: object
) -> str:
    reply = await stub.Enqueue(
        pb.EnqueueRequest(queue=queue, job=job_pb2.JobSpec(payload=payload, **spec))
    )
    return reply.job_id


async def lease(
    stub: rpc.BrokerServiceStub, queue: str = "q", n: int = 1, wait_ms: int = 0
) -> list[pb.LeasedJob]:
    request = pb.LeaseRequest(queue=queue, max_jobs=n)
    if wait_ms:
        request.wait.CopyFrom(ms(wait_ms))
    return list((await stub.Lease(request)).jobs)


async def get(stub: rpc.BrokerServiceStub, job_id: str) -> job_pb2.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


def millis(t: object) -> int:
    return int(t.seconds) * 1000 + int(t.nanos) // 1_000_000  # type: ignore[attr-defined]
