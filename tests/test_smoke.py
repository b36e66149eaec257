"""The quickest end-to-end check: enqueue, lease, complete, over real gRPC."""

from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2


async def test_enqueue_lease_complete(stub: rpc.BrokerServiceStub) -> None:
    enq = await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))
    leased = await stub.Lease(pb.LeaseRequest(queue="q"))
    (job,) = leased.jobs
    assert job.job.id == enq.job_id and job.attempt == 1
    await stub.Complete(pb.CompleteRequest(job_id=job.job.id, lease_token=job.lease_token))
    got = await stub.GetJob(pb.GetJobRequest(job_id=enq.job_id))
    assert got.job.state == job_pb2.JOB_STATE_COMPLETED
