"""Acceptance 8: StreamProgress sends the current state, then every change in order, ends
at a terminal state, and resumes from the last event id without missing anything."""

import asyncio

import grpc
import pytest
from helpers import enqueue, lease
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2

pytestmark = pytest.mark.redis_matrix

K = pb.StreamProgressResponse


def summary(e: pb.StreamProgressResponse) -> tuple[str, str, float]:
    return (pb.EventKind.Name(e.kind), job_pb2.JobState.Name(e.job.state), e.job.progress.percent)


async def run_job(
    stub: rpc.BrokerServiceStub,
    job_id: str,
    started: asyncio.Event,
    step: asyncio.Event | None = None,
) -> None:
    await started.wait()
    (held,) = await lease(stub)
    for percent in (10, 50, 100):
        if percent == 100 and step is not None:
            await step.wait()
        await stub.Heartbeat(
            pb.HeartbeatRequest(
                job_id=job_id,
                lease_token=held.lease_token,
                progress=job_pb2.Progress(percent=percent),
            )
        )
    await stub.Complete(
        pb.CompleteRequest(job_id=job_id, lease_token=held.lease_token, result=b"done")
    )


async def test_progress_then_completion_in_order(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    started = asyncio.Event()
    worker = asyncio.create_task(run_job(stub, job_id, started))
    events = []
    async for event in stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id)):
        events.append(event)
        started.set()
    await worker
    assert [summary(e) for e in events] == [
        ("EVENT_KIND_SNAPSHOT", "JOB_STATE_READY", 0),
        ("EVENT_KIND_STATE_CHANGED", "JOB_STATE_ACTIVE", 0),
        ("EVENT_KIND_PROGRESS", "JOB_STATE_ACTIVE", 10),
        ("EVENT_KIND_PROGRESS", "JOB_STATE_ACTIVE", 50),
        ("EVENT_KIND_PROGRESS", "JOB_STATE_ACTIVE", 100),
        ("EVENT_KIND_STATE_CHANGED", "JOB_STATE_COMPLETED", 100),
    ]
    assert events[-1].job.result == b"done"
    assert [e.event_id for e in events[1:]] == sorted(e.event_id for e in events[1:])


async def test_reconnect_with_the_last_event_id_misses_nothing(
    stub: rpc.BrokerServiceStub,
) -> None:
    job_id = await enqueue(stub)
    started, step = asyncio.Event(), asyncio.Event()
    worker = asyncio.create_task(run_job(stub, job_id, started, step))
    first: list[pb.StreamProgressResponse] = []
    call = stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))
    async for event in call:
        first.append(event)
        started.set()
        if event.job.progress.percent == 50:
            break  # the client goes away mid-job
    call.cancel()
    step.set()
    await worker  # progress 100 and the completion happen while nobody watches
    rest = [
        e
        async for e in stub.StreamProgress(
            pb.StreamProgressRequest(job_id=job_id, after_event_id=first[-1].event_id)
        )
    ]
    assert [summary(e)[2] for e in first] == [0, 0, 10, 50]
    assert [summary(e) for e in rest] == [
        ("EVENT_KIND_PROGRESS", "JOB_STATE_ACTIVE", 100),
        ("EVENT_KIND_STATE_CHANGED", "JOB_STATE_COMPLETED", 100),
    ]


async def test_stream_of_a_finished_job_is_one_snapshot(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    await stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
    events = [e async for e in stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))]
    assert [summary(e) for e in events] == [("EVENT_KIND_SNAPSHOT", "JOB_STATE_CANCELLED", 0)]


async def test_stream_of_an_unknown_job_is_not_found(stub: rpc.BrokerServiceStub) -> None:
    call = stub.StreamProgress(pb.StreamProgressRequest(job_id="q:77"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_many_watchers_share_one_connection(stub: rpc.BrokerServiceStub) -> None:
    job_id = await enqueue(stub)
    watchers = [stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id)) for _ in range(50)]
    firsts = [await w.read() for w in watchers]
    assert all(f.kind == pb.EVENT_KIND_SNAPSHOT for f in firsts)
    started = asyncio.Event()
    started.set()
    await run_job(stub, job_id, started)
    for w in watchers:
        states = []
        while (event := await w.read()) is not grpc.aio.EOF:
            states.append(event.job.state)
        assert states[-1] == job_pb2.JOB_STATE_COMPLETED and len(states) == 5
