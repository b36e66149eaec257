"""A StreamProgress watcher of a job that is deleted (DeleteJobs, DrainQueue, DeleteQueue)
hears of it: the stream ends NOT_FOUND (reason JOB_NOT_FOUND) at once instead of waiting
for an event that never comes, and the deleted job's event stream expires soon after.
And a DeleteQueue without force never deletes a job under its worker, batch by batch."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest
from helpers import enqueue, lease
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire_broker.domain.model import NewJob
from jobwire_broker.server import BrokerApp
from jobwire_broker.store import Store
from redis.asyncio import Redis
from test_bad_input import rich

Q = "q"
ENDS_WITHIN_S = 2.0
DELETED_EVENTS_TTL_S = 60  # lib.lua DELETED_EVENTS_TTL_S

Delete = Callable[[arpc.AdminServiceStub, str], Awaitable[object]]


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


async def watch_until_it_ends(
    stub: rpc.BrokerServiceStub, job_id: str, watching: asyncio.Event
) -> list[pb.StreamProgressResponse]:
    events = []
    async for event in stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id)):
        events.append(event)
        watching.set()  # the snapshot came: the job is marked watched
    return events


async def delete_jobs(admin: arpc.AdminServiceStub, job_id: str) -> object:
    return await admin.DeleteJobs(apb.DeleteJobsRequest(queue=Q, job_ids=[job_id]))


async def drain_queue(admin: arpc.AdminServiceStub, job_id: str) -> object:
    return await admin.DrainQueue(apb.DrainQueueRequest(queue=Q))


async def delete_queue(admin: arpc.AdminServiceStub, job_id: str) -> object:
    return await admin.DeleteQueue(apb.DeleteQueueRequest(queue=Q))


@pytest.mark.parametrize("delete", [delete_jobs, drain_queue, delete_queue])
async def test_a_watcher_of_a_deleted_job_gets_not_found(
    admin: arpc.AdminServiceStub,
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    delete: Delete,
) -> None:
    job_id = await enqueue(stub)
    unwatched = await enqueue(stub)
    watching = asyncio.Event()
    watcher = asyncio.create_task(watch_until_it_ends(stub, job_id, watching))
    await asyncio.wait_for(watching.wait(), ENDS_WITHIN_S)
    await delete(admin, job_id)
    if delete is delete_jobs:
        await delete(admin, unwatched)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(watcher, ENDS_WITHIN_S)
    err = rich(caught.value)
    assert (err.code, err.reason) == (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND")
    assert job_id in err.message
    # The 'deleted' event outlives the job briefly; an unwatched job leaves no stream.
    events = f"{prefix}:{{{Q}}}:events:"
    assert 0 < await redis.ttl(events + job_id.rsplit(":", 1)[1]) <= DELETED_EVENTS_TTL_S
    assert not await redis.exists(events + unwatched.rsplit(":", 1)[1])
    assert not await redis.exists(f"{prefix}:{{{Q}}}:job:{job_id.rsplit(':', 1)[1]}")


async def test_a_watcher_of_an_active_job_deleted_with_its_queue_gets_not_found(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    job_id = await enqueue(stub)
    (held,) = await lease(stub)
    watching = asyncio.Event()
    watcher = asyncio.create_task(watch_until_it_ends(stub, job_id, watching))
    await asyncio.wait_for(watching.wait(), ENDS_WITHIN_S)
    await admin.DeleteQueue(apb.DeleteQueueRequest(queue=Q, force=True))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(watcher, ENDS_WITHIN_S)
    assert rich(caught.value).reason == "JOB_NOT_FOUND"
    assert held.job.id == job_id


async def test_resuming_the_watch_of_a_deleted_job_is_not_found(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    job_id = await enqueue(stub)
    first = await anext(aiter(stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))))
    await delete_jobs(admin, job_id)
    resumed = stub.StreamProgress(
        pb.StreamProgressRequest(job_id=job_id, after_event_id=first.event_id)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await asyncio.wait_for(anext(aiter(resumed)), ENDS_WITHIN_S)
    assert rich(caught.value).reason == "JOB_NOT_FOUND"


# -- DeleteQueue without force, batch by batch ------------------------------------------


async def test_each_batch_of_a_delete_without_force_refuses_once_a_job_is_active(
    store: Store, redis: Redis, prefix: str
) -> None:
    await store.enqueue(Q, [NewJob(b"x") for _ in range(3)])
    paused = f"{prefix}:{{{Q}}}:paused"
    args = {"states": ["ready"], "limit": 2, "all_keys": True, "idle": True}
    first = await store.run("drain_queue", Q, args)
    assert (first["deleted"], first["done"], first["was_paused"]) == (2, False, False)
    assert await redis.exists(paused), "the first batch pauses the queue"
    assert not (await store.lease(Q, 1)).jobs
    await store.run("pause_queue", Q, {"paused": False})  # a ResumeQueue meanwhile
    (job,) = (await store.lease(Q, 1)).jobs
    second = await store.run("drain_queue", Q, {**args, "was_paused": False})
    assert (second["deleted"], second["active"]) == (0, 1)
    assert await store.get(Q, job.seq) is not None
    assert not await redis.exists(paused)


async def test_a_refused_delete_leaves_a_paused_queue_paused(
    store: Store, redis: Redis, prefix: str
) -> None:
    await store.enqueue(Q, [NewJob(b"x")])
    (job,) = (await store.lease(Q, 1)).jobs
    await store.run("pause_queue", Q, {"paused": True})
    args = {"states": ["ready"], "limit": 2, "all_keys": True, "idle": True}
    refused = await store.run("drain_queue", Q, args)
    assert (refused["deleted"], refused["active"], refused["was_paused"]) == (0, 1, True)
    assert await redis.exists(f"{prefix}:{{{Q}}}:paused")
    assert await store.get(Q, job.seq) is not None
