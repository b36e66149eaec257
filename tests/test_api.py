"""Every RPC end to end over real gRPC, driven by the raw generated stubs."""

import grpc
import pytest
from google.protobuf.struct_pb2 import Struct
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers import enqueue, get, lease, millis, ms
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp

pytestmark = pytest.mark.redis_matrix


async def test_enqueue_returns_an_id_and_get_job_echoes_the_spec(
    stub: rpc.BrokerServiceStub,
) -> None:
    spec = job_pb2.JobSpec(
        payload="héllo ✓".encode(),
        content_type="text/plain",
        headers={"tenant": "t-1"},
        priority=7,
        max_attempts=4,
        lease_duration=ms(5_000),
        execution_timeout=ms(60_000),
        idempotency_key="order-1",
        backoff=job_pb2.BackoffPolicy(
            kind=job_pb2.BACKOFF_KIND_LINEAR,
            initial_delay=ms(250),
            max_delay=ms(10_000),
            multiplier=2,
            jitter=0.1,
        ),
        trace_context=job_pb2.TraceContext(
            traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ),
    )
    reply = await stub.Enqueue(pb.EnqueueRequest(queue="mail", job=spec))
    assert reply.job_id == "mail:1" and not reply.duplicate
    assert reply.state == job_pb2.JOB_STATE_READY
    job = await get(stub, reply.job_id)
    assert job.queue == "mail" and job.state == job_pb2.JOB_STATE_READY
    assert job.spec == spec
    assert job.attempt == 0 and millis(job.create_time) > 0


async def test_enqueue_with_the_same_idempotency_key_returns_the_first_job(
    stub: rpc.BrokerServiceStub,
) -> None:
    first = await stub.Enqueue(
        pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"1", idempotency_key="k"))
    )
    again = await stub.Enqueue(
        pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"2", idempotency_key="k"))
    )
    assert again.job_id == first.job_id and again.duplicate
    assert len(await lease(stub, n=10)) == 1


async def test_enqueue_batch_is_ordered_and_leases_many(stub: rpc.BrokerServiceStub) -> None:
    jobs = [job_pb2.JobSpec(payload=str(i).encode()) for i in range(50)]
    reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="q", jobs=jobs))
    assert [r.job_id for r in reply.results] == [f"q:{i}" for i in range(1, 51)]
    leased = await lease(stub, n=100)
    assert [j.job.spec.payload for j in leased] == [str(i).encode() for i in range(50)]


async def test_heartbeat_extends_and_reports_progress(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub, lease_duration=ms(2_000))
    (held,) = await lease(stub)
    details = Struct()
    details.update({"step": "fetch", "n": 3})
    reply = await stub.Heartbeat(
        pb.HeartbeatRequest(
            job_id=job_id,
            lease_token=held.lease_token,
            lease_extension=ms(60_000),
            progress=job_pb2.Progress(percent=30, message="fetching", details=details),
        )
    )
    assert millis(reply.lease_expire_time) > millis(held.lease_expire_time) + 50_000
    assert not reply.cancel_requested
    job = await get(stub, job_id)
    assert job.progress.percent == 30 and job.progress.message == "fetching"
    assert dict(job.progress.details) == {"step": "fetch", "n": 3.0}


async def test_heartbeat_batch_spans_queues(stub: rpc.BrokerServiceStub) -> None:
    await enqueue(stub, "a")
    await enqueue(stub, "b")
    held = [*(await lease(stub, "a")), *(await lease(stub, "b"))]
    reply = await stub.HeartbeatBatch(
        pb.HeartbeatBatchRequest(
            heartbeats=[
                pb.HeartbeatRequest(job_id=h.job.id, lease_token=h.lease_token) for h in held
            ]
            + [pb.HeartbeatRequest(job_id=held[0].job.id, lease_token="stale")]
        )
    )
    assert [r.status.code for r in reply.results] == [
        0,
        0,
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
    ]
    assert reply.results[2].status.reason == "LEASE_LOST"


async def test_complete_stores_the_result(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    (held,) = await lease(stub)
    await stub.Complete(
        pb.CompleteRequest(
            job_id=job_id,
            lease_token=held.lease_token,
            result=b'{"ok":true}',
            result_content_type="application/json",
        )
    )
    job = await get(stub, job_id)
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert job.result == b'{"ok":true}' and job.result_content_type == "application/json"
    assert millis(job.finish_time) >= millis(job.start_time) > 0


async def test_fail_schedules_a_retry(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    (held,) = await lease(stub)
    reply = await stub.Fail(
        pb.FailRequest(
            job_id=job_id,
            lease_token=held.lease_token,
            error=job_pb2.JobError(type="TimeoutError", message="upstream slow"),
            retry_delay=ms(30_000),
        )
    )
    assert reply.state == job_pb2.JOB_STATE_SCHEDULED
    job = await get(stub, job_id)
    assert job.last_error.type == "TimeoutError" and job.state == job_pb2.JOB_STATE_SCHEDULED
    assert millis(job.run_time) == millis(reply.retry_time)


async def test_settle_batch_completes_and_fails_in_one_call(stub: rpc.BrokerServiceStub) -> None:
    await stub.EnqueueBatch(
        pb.EnqueueBatchRequest(
            queue="q", jobs=[job_pb2.JobSpec(payload=b"x", max_attempts=1) for _ in range(3)]
        )
    )
    a, b, c = await lease(stub, n=3)
    reply = await stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[
                pb.Settlement(
                    complete=pb.CompleteRequest(job_id=a.job.id, lease_token=a.lease_token)
                ),
                pb.Settlement(
                    fail=pb.FailRequest(
                        job_id=b.job.id, lease_token=b.lease_token, error=job_pb2.JobError(type="E")
                    )
                ),
                pb.Settlement(complete=pb.CompleteRequest(job_id=c.job.id, lease_token="stale")),
                pb.Settlement(complete=pb.CompleteRequest(job_id="q:999", lease_token="t")),
            ]
        )
    )
    codes = [r.status.code for r in reply.results]
    assert codes == [
        0,
        0,
        grpc.StatusCode.FAILED_PRECONDITION.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
    ]
    assert reply.results[1].fail.state == job_pb2.JOB_STATE_DEAD
    assert (await get(stub, a.job.id)).state == job_pb2.JOB_STATE_COMPLETED
    assert (await get(stub, b.job.id)).state == job_pb2.JOB_STATE_DEAD
    assert (await get(stub, c.job.id)).state == job_pb2.JOB_STATE_ACTIVE


async def test_cancel_pending_job_at_once(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub, delay=ms(60_000))
    reply = await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
    assert reply.state == job_pb2.JOB_STATE_CANCELLED
    assert (await get(stub, job_id)).state == job_pb2.JOB_STATE_CANCELLED


async def test_cancel_active_job_flags_its_worker(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    (held,) = await lease(stub)
    reply = await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
    assert reply.state == job_pb2.JOB_STATE_ACTIVE
    beat = await stub.Heartbeat(pb.HeartbeatRequest(job_id=job_id, lease_token=held.lease_token))
    assert beat.cancel_requested
    failed = await stub.Fail(
        pb.FailRequest(
            job_id=job_id, lease_token=held.lease_token, error=job_pb2.JobError(type="Cancelled")
        )
    )
    assert failed.state == job_pb2.JOB_STATE_CANCELLED


async def test_unknown_job_is_not_found(stub: rpc.BrokerServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await get(stub, "q:404")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection_are_on(broker: BrokerApp) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "jobwire.v1.BrokerService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in reflect.ServerReflectionInfo(iter([request])):
            names = {s.name for s in reply.list_services_response.service}
            assert {"jobwire.v1.BrokerService", "grpc.health.v1.Health"} <= names
            break
