"""AdminService's job RPCs end to end over real gRPC on a real Valkey: ListJobs (position
paging that stays correct while jobs move, filters, the scan and size bounds), RetryJobs,
DeleteJobs and PromoteJobs (by ids, all or nothing; by state, batch after batch), and
their bad-input cases (invariant 7: nothing written)."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
import pytest
import test_bad_input as bad_input
from helpers import millis, ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.fingerprint import fingerprint
from jobwire_broker.server import BrokerApp
from jobwire_broker.store.batches import JOBS_PER_CALL
from redis.asyncio import Redis
from test_bad_input import INVALID, World, assert_unchanged, rejected, snapshot

pytestmark = pytest.mark.redis_matrix

Q = "q"
DEAD = job_pb2.JOB_STATE_DEAD
OLDEST = apb.LIST_ORDER_OLDEST_FIRST
NEWEST = apb.LIST_ORDER_NEWEST_FIRST
NOT_FOUND = grpc.StatusCode.NOT_FOUND
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
BAD = grpc.StatusCode.INVALID_ARGUMENT
MIB = 1 << 20

world = bad_input.world  # the fixture: a queue with a job in every state


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


# -- helpers ---------------------------------------------------------------------------


async def enqueue(
    stub: rpc.BrokerServiceStub, specs: Sequence[job_pb2.JobSpec], queue: str = Q
) -> list[str]:
    """Enqueues in batches of 1000; returns the ids in order."""
    ids: list[str] = []
    for start in range(0, len(specs), 1000):
        batch = specs[start : start + 1000]
        reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=batch))
        ids += [r.job_id for r in reply.results]
    return ids


def specs(n: int, **kwargs: Any) -> list[job_pb2.JobSpec]:
    kwargs.setdefault("payload", b"x")
    return [job_pb2.JobSpec(**kwargs) for _ in range(n)]


async def fail_leased(
    stub: rpc.BrokerServiceStub,
    n: int,
    error: Callable[[int], job_pb2.JobError],
    queue: str = Q,
) -> list[str]:
    """Leases up to n ready jobs (1000 per Lease) and fails each (one SettleBatch per
    Lease, so each batch shares one finish time); returns their ids in lease order."""
    failed: list[str] = []
    while len(failed) < n:
        want = min(1000, n - len(failed))
        leased = (await stub.Lease(pb.LeaseRequest(queue=queue, max_jobs=want))).jobs
        if not leased:
            break
        settlements = [
            pb.Settlement(
                fail=pb.FailRequest(
                    job_id=job.job.id, lease_token=job.lease_token, error=error(len(failed) + i)
                )
            )
            for i, job in enumerate(leased)
        ]
        reply = await stub.SettleBatch(pb.SettleBatchRequest(settlements=settlements))
        assert all(r.status.code == 0 for r in reply.results)
        failed += [job.job.id for job in leased]
    return failed


def fatal(error_type: str = "Fatal", message: str = "boom") -> Callable[[int], job_pb2.JobError]:
    return lambda i: job_pb2.JobError(type=error_type, message=message, non_retryable=True)


async def dead_jobs(
    stub: rpc.BrokerServiceStub, n: int, error_type: str = "Fatal", **kwargs: Any
) -> list[str]:
    """n new dead jobs (enqueued, leased, failed for good)."""
    await enqueue(stub, specs(n, **kwargs))
    return await fail_leased(stub, n, fatal(error_type))


async def list_ids(
    admin: arpc.AdminServiceStub,
    state: int = DEAD,
    order: int = OLDEST,
    page_size: int = 100,
    job_filter: apb.JobFilter | None = None,
    between: Callable[[list[str]], Any] | None = None,
) -> list[str]:
    """Every job id across the pages; `between(page_ids)` runs after each page."""
    seen: list[str] = []
    token = ""
    while True:
        page = await admin.ListJobs(
            apb.ListJobsRequest(
                queue=Q,
                state=state,
                order=order,
                page_size=page_size,
                page_token=token,
                filter=job_filter,
            )
        )
        ids = [j.id for j in page.jobs]
        seen += ids
        if between is not None:
            await between(ids)
        token = page.next_page_token
        if not token:
            return seen


def key(prefix: str, name: str) -> str:
    return f"{prefix}:{{{Q}}}:{name}"


def seq(job_id: str) -> str:
    return job_id.rsplit(":", 1)[1]


async def queue_events(redis: Redis, prefix: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(key(prefix, "qevents"))]


# -- ListJobs ----------------------------------------------------------------------------


async def test_list_jobs_goes_in_each_states_order_and_its_reverse(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    low = await enqueue(stub, specs(3, priority=-5))
    high = await enqueue(stub, specs(2, priority=9))
    mid = await enqueue(stub, specs(2))
    ready = [*high, *mid, *low]  # lease order: priority, then FIFO
    assert await list_ids(admin, job_pb2.JOB_STATE_READY, page_size=2) == ready
    assert await list_ids(admin, job_pb2.JOB_STATE_READY, NEWEST, 3) == ready[::-1]
    assert await list_ids(admin, job_pb2.JOB_STATE_READY, apb.LIST_ORDER_UNSPECIFIED) == ready

    later = await enqueue(stub, [job_pb2.JobSpec(payload=b"x", delay=ms(90_000))])
    sooner = await enqueue(stub, [job_pb2.JobSpec(payload=b"x", delay=ms(60_000))])
    assert await list_ids(admin, job_pb2.JOB_STATE_SCHEDULED) == [*sooner, *later]

    first = await fail_leased(stub, 2, fatal())
    await asyncio.sleep(0.005)
    second = await fail_leased(stub, 1, fatal())
    assert await list_ids(admin, DEAD, page_size=1) == [*first, *second]
    assert await list_ids(admin, DEAD, NEWEST, page_size=1) == [*second, *first[::-1]]


async def test_list_jobs_returns_whole_jobs_and_payloads_only_when_asked(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await enqueue(stub, specs(60, payload=b"body", headers={"tenant": "t1"}))
    page = await admin.ListJobs(apb.ListJobsRequest(queue=Q, state=job_pb2.JOB_STATE_READY))
    assert len(page.jobs) == 50 and page.next_page_token  # page_size 0 means 50
    job = page.jobs[0]
    assert job.id == f"{Q}:1" and job.state == job_pb2.JOB_STATE_READY
    assert job.spec.headers == {"tenant": "t1"} and job.spec.payload == b""
    assert millis(job.create_time) > 0
    full = await admin.ListJobs(
        apb.ListJobsRequest(queue=Q, state=job_pb2.JOB_STATE_READY, include_payloads=True)
    )
    assert full.jobs[0].spec.payload == b"body"
    got = (await stub.GetJob(pb.GetJobRequest(job_id=job.id))).job
    assert full.jobs[0] == got

    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    await stub.Complete(
        pb.CompleteRequest(job_id=leased.job.id, lease_token=leased.lease_token, result=b"r")
    )
    done = job_pb2.JOB_STATE_COMPLETED
    bare = await admin.ListJobs(apb.ListJobsRequest(queue=Q, state=done))
    assert bare.jobs[0].result == b"" and not bare.next_page_token
    with_result = await admin.ListJobs(
        apb.ListJobsRequest(queue=Q, state=done, include_payloads=True)
    )
    assert with_result.jobs[0].result == b"r"


async def test_a_page_with_payloads_ends_before_4_mib(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    big = MIB - 64
    await enqueue(stub, [job_pb2.JobSpec(payload=bytes([i]) * big) for i in range(7)])
    request = apb.ListJobsRequest(
        queue=Q, state=job_pb2.JOB_STATE_READY, include_payloads=True, page_size=10
    )
    pages = []
    while True:
        page = await admin.ListJobs(request)
        assert page.ByteSize() <= 4 * MIB
        pages.append([j.spec.payload[0] for j in page.jobs])
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(len(j.spec.payload) == big for j in page.jobs)
    # Without payloads the same jobs fit one page.
    bare = await admin.ListJobs(apb.ListJobsRequest(queue=Q, state=job_pb2.JOB_STATE_READY))
    assert len(bare.jobs) == 7 and not bare.next_page_token


def test_the_reply_is_cut_exactly_when_the_scripts_estimate_falls_short() -> None:
    """The script's size estimate ends pages first; should it fall short, the reply is
    cut on its encoded size and the token goes on after the last job kept."""
    from jobwire_broker.api.job_admin_responses import REPLY_BYTES, job_page
    from jobwire_broker.domain.jobs_admin import JobPage, Position, parse_page_token
    from jobwire_broker.domain.model import JobRecord, JobState

    jobs = [
        (JobRecord(Q, n, JobState.READY, payload=b"p" * 1_500_000), Position(str(n), str(n)))
        for n in (1, 2, 3)
    ]
    reply = job_page(Q, "ready", False, JobPage(jobs, None))
    assert [j.id for j in reply.jobs] == [f"{Q}:1", f"{Q}:2"]
    assert reply.ByteSize() <= REPLY_BYTES
    assert parse_page_token(reply.next_page_token, Q, "ready", False) == Position("2", "2")
    whole = job_page(Q, "ready", False, JobPage(jobs[:2], Position("9", "9")))
    assert len(whole.jobs) == 2
    assert parse_page_token(whole.next_page_token, Q, "ready", False) == Position("9", "9")
    one = job_page(Q, "ready", False, JobPage(jobs[:1], None))
    assert len(one.jobs) == 1 and one.next_page_token == ""


async def test_list_jobs_filters_on_error_type_header_and_fingerprint(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await enqueue(stub, specs(4, headers={"tenant": "a"}))
    await enqueue(stub, specs(3, headers={"tenant": "b", "vip": "1"}))
    await enqueue(stub, specs(2))

    def error(i: int) -> job_pb2.JobError:
        kind = "Timeout" if i % 2 else "KeyError"
        return job_pb2.JobError(type=kind, message=f"item {i} failed", non_retryable=True)

    dead = await fail_leased(stub, 9, error)

    def where(**kwargs: str) -> Any:
        return list_ids(admin, job_filter=apb.JobFilter(**kwargs), page_size=2)

    assert await where(error_type="Timeout") == dead[1::2]
    assert await where(header_key="tenant") == dead[:7]
    assert await where(header_key="tenant", header_value="b") == dead[4:7]
    assert await where(header_key="vip", error_type="KeyError") == [dead[4], dead[6]]
    assert await where(header_key="nope") == []
    timeout_print = fingerprint("Timeout", "item 1 failed")[0]
    assert await where(error_fingerprint=timeout_print) == dead[1::2]
    both = await where(error_fingerprint=timeout_print, header_key="tenant", header_value="a")
    assert both == [dead[1], dead[3]]
    newest = await list_ids(
        admin, order=NEWEST, job_filter=apb.JobFilter(error_fingerprint=timeout_print)
    )
    assert newest == dead[1::2][::-1]


async def test_a_filtered_page_examines_at_most_5000_jobs(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    await enqueue(stub, specs(5_999))
    await enqueue(stub, specs(1, headers={"needle": "1"}))
    dead = await fail_leased(stub, 6_000, fatal())
    request = apb.ListJobsRequest(
        queue=Q, state=DEAD, page_size=10, filter=apb.JobFilter(header_key="needle")
    )
    first = await admin.ListJobs(request)
    assert first.jobs == [] and first.next_page_token  # 5000 looked at, none matched
    request.page_token = first.next_page_token
    second = await admin.ListJobs(request)
    assert [j.id for j in second.jobs] == [dead[-1]] and not second.next_page_token


async def test_a_page_boundary_holds_when_its_job_leaves_among_ties(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    """JOBS_PER_CALL jobs dead at the same millisecond (a SettleBatch that size is one
    script call), so their order is by member alone. After each page, the page's last
    job (the cursor's own member) leaves, and so do the job right after it and one
    further on, not listed yet: the rest is still listed exactly once, in Redis order."""
    await enqueue(stub, specs(JOBS_PER_CALL))
    for order in (OLDEST, NEWEST):
        dead = await fail_leased(stub, JOBS_PER_CALL, fatal())
        scores = {s for _, s in await redis.zrange(key(prefix, "dead"), 0, -1, withscores=True)}
        assert len(scores) == 1, "one finish time: every page boundary falls among ties"
        redis_order = sorted(dead, key=seq, reverse=order == NEWEST)  # bytewise by member
        gone: set[str] = set()

        async def churn(
            page: list[str], in_order: list[str] = redis_order, gone: set[str] = gone
        ) -> None:
            if not page:
                return
            rest = [j for j in in_order[in_order.index(page[-1]) + 1 :] if j not in gone]
            ahead = rest[:1] + rest[3:4]
            leaving = [page[-1], *ahead]
            reply = await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=leaving))
            assert reply.retried == len(leaving)
            gone.update(ahead)

        seen = await list_ids(admin, order=order, page_size=8, between=churn)
        assert gone and seen == [j for j in redis_order if j not in gone]
        await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, state=DEAD))  # all ready again


async def test_list_jobs_pages_through_10000_dead_jobs_while_others_come_and_go(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    """Acceptance 3. 10,000 jobs die (max_attempts 1, in batches of 1000); while both
    orders are paged through, 100 page_size pages each, another client keeps failing and
    redriving 200 other jobs of the queue, which enter and leave the dead set (by
    RetryJobs and by RedriveDeadLetters). Each of the 10,000 is listed exactly once."""
    originals: list[str] = []
    for _ in range(10):
        await enqueue(stub, specs(1_000, max_attempts=1))
        originals += await fail_leased(
            stub, 1_000, lambda i: job_pb2.JobError(type="Original", message=f"job {i}")
        )
    assert len(set(originals)) == 10_000
    churners = set(await enqueue(stub, specs(200, max_attempts=1)))
    churn_print = fingerprint("Churn", "again")[0]
    stop = asyncio.Event()
    cycles = 0

    async def churn() -> None:
        nonlocal cycles
        async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
            worker = rpc.BrokerServiceStub(channel)
            other = arpc.AdminServiceStub(channel)
            while not stop.is_set():
                failed = await fail_leased(
                    worker, 200, lambda i: job_pb2.JobError(type="Churn", message="again")
                )
                assert set(failed) <= churners
                if cycles % 2:
                    await other.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=failed[:100]))
                    rest = apb.RetryJobsRequest(
                        queue=Q, state=DEAD, filter=apb.JobFilter(error_type="Churn")
                    )
                    await other.RetryJobs(rest)
                else:
                    redrive = apb.RedriveDeadLettersRequest(queue=Q, fingerprint=churn_print)
                    async for _ in other.RedriveDeadLetters(redrive):
                        pass
                cycles += 1

    task = asyncio.create_task(churn())
    try:
        for order in (OLDEST, NEWEST):
            before = cycles
            pages = 0

            async def pause(page: list[str]) -> None:
                nonlocal pages
                pages += 1
                await asyncio.sleep(0.002)  # let the churn run between pages

            seen = await list_ids(admin, order=order, page_size=100, between=pause)
            listed = [j for j in seen if j not in churners]
            assert len(listed) == 10_000 and set(listed) == set(originals)
            assert pages >= 100
            assert cycles - before >= 3, "the churn should have run throughout"
    finally:
        stop.set()
        await task


# -- RetryJobs ---------------------------------------------------------------------------


async def test_retry_counts_attempts_afresh_and_keeps_the_attempt_number_growing(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    (job_id,) = await enqueue(stub, specs(1, max_attempts=2))
    flaky = lambda i: job_pb2.JobError(type="Flaky", message="try again")  # noqa: E731
    for _ in range(2):
        request = pb.FailRequest(retry_delay=ms(0))
        (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
        request.job_id, request.lease_token = leased.job.id, leased.lease_token
        request.error.CopyFrom(flaky(0))
        await stub.Fail(request)
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    assert job.state == DEAD and (job.attempt, job.counted_attempts) == (2, 2)
    group = fingerprint("Flaky", "try again")[0]
    assert await redis.zscore(key(prefix, "dlgroups"), group) is not None

    reply = await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[job_id, job_id]))
    assert reply.retried == 1  # named twice, retried once
    job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
    assert job.state == job_pb2.JOB_STATE_READY
    assert (job.attempt, job.counted_attempts) == (2, 0)
    assert not job.HasField("finish_time") and job.last_error.type == "Flaky"
    assert await redis.zscore(key(prefix, "dlgroups"), group) is None
    assert not await redis.exists(key(prefix, f"dlg:{group}"), key(prefix, f"dlgmeta:{group}"))
    last = (await queue_events(redis, prefix))[-1]
    assert (last[b"kind"], last[b"job"], last[b"state"]) == (
        b"ready",
        seq(job_id).encode(),
        b"ready",
    )

    # Two more attempts before it is dead again; the fencing number goes on from 2.
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    assert leased.attempt == 3
    failed = await stub.Fail(
        pb.FailRequest(
            job_id=job_id, lease_token=leased.lease_token, error=flaky(0), retry_delay=ms(0)
        )
    )
    assert failed.state == job_pb2.JOB_STATE_READY
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    failed = await stub.Fail(
        pb.FailRequest(job_id=job_id, lease_token=leased.lease_token, error=flaky(0))
    )
    assert failed.state == DEAD and leased.attempt == 4


async def test_retry_brings_cancelled_jobs_back(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    waiting, running = await enqueue(stub, specs(2))
    await stub.CancelJob(pb.CancelJobRequest(job_id=waiting))
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    await stub.CancelJob(pb.CancelJobRequest(job_id=running))
    await stub.Fail(
        pb.FailRequest(
            job_id=running, lease_token=leased.lease_token, error=job_pb2.JobError(type="Stop")
        )
    )
    cancelled = job_pb2.JOB_STATE_CANCELLED
    assert await list_ids(admin, cancelled) == [waiting, running]
    reply = await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, state=cancelled))
    assert reply.retried == 2
    for job_id in (waiting, running):
        job = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job
        assert job.state == job_pb2.JOB_STATE_READY and not job.cancel_requested
        assert job.counted_attempts == 0
    leased_again = (await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=2))).jobs
    assert sorted(j.job.id for j in leased_again) == sorted([waiting, running])


async def test_retry_by_ids_is_all_or_nothing(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[world.dead, world.ready])),
        PRECONDITION,
        "WRONG_STATE",
    )
    assert world.ready in err.message and "dead or cancelled" in err.message
    assert [v.subject for v in err.preconditions] == [f"job:{world.ready}"]
    err = await rejected(
        redis,
        prefix,
        lambda: admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[world.dead, f"{Q}:999"])),
        NOT_FOUND,
        "JOB_NOT_FOUND",
    )
    assert f"{Q}:999" in err.message
    reply = await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[world.dead]))
    assert reply.retried == 1


async def test_retry_by_state_and_filter_goes_batch_after_batch(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_500, headers={"tenant": "a"}))
    await enqueue(stub, specs(700, headers={"tenant": "b"}))
    await fail_leased(stub, 1_500, fatal("Timeout"))
    await fail_leased(stub, 700, fatal("KeyError"))
    reply = await admin.RetryJobs(
        apb.RetryJobsRequest(queue=Q, state=DEAD, filter=apb.JobFilter(error_type="Timeout"))
    )
    assert reply.retried == 1_500
    assert await redis.zcard(key(prefix, "ready")) == 1_500
    assert await redis.zcard(key(prefix, "dead")) == 700
    reply = await admin.RetryJobs(
        apb.RetryJobsRequest(
            queue=Q,
            state=DEAD,
            filter=apb.JobFilter(header_key="tenant", header_value="a"),
        )
    )
    assert reply.retried == 0
    reply = await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, state=DEAD))
    assert reply.retried == 700
    assert await redis.zcard(key(prefix, "dead")) == 0
    assert await redis.zcard(key(prefix, "dlgroups")) == 0
    kinds = [e[b"kind"] for e in await queue_events(redis, prefix)]
    assert kinds.count(b"ready") == 2_200


# -- DeleteJobs --------------------------------------------------------------------------


async def test_delete_by_ids_removes_jobs_with_their_keys(
    admin: arpc.AdminServiceStub,
    world: World,
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
) -> None:
    doomed = [world.completed, world.dead, world.ready, world.scheduled]
    reply = await admin.DeleteJobs(apb.DeleteJobsRequest(queue=Q, job_ids=doomed))
    assert reply.deleted == 4
    for job_id in doomed:
        assert not await redis.exists(key(prefix, f"job:{seq(job_id)}"))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.GetJob(pb.GetJobRequest(job_id=job_id))
        assert caught.value.code() == NOT_FOUND
    for state in ("completed", "dead", "ready", "scheduled", "dlgroups"):
        assert await redis.zcard(key(prefix, state)) == 0, state
    removed = [e for e in await queue_events(redis, prefix) if e[b"kind"] == b"removed"]
    assert [(e[b"job"], e[b"state"]) for e in removed] == [
        (seq(j).encode(), s)
        for j, s in zip(doomed, (b"completed", b"dead", b"ready", b"scheduled"), strict=True)
    ]
    # The ready job's idempotency key went with it.
    again = await stub.Enqueue(
        pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec(payload=b"y", idempotency_key="k1"))
    )
    assert not again.duplicate and again.job_id != world.ready


async def test_delete_refuses_active_jobs_and_changes_nothing(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: admin.DeleteJobs(
            apb.DeleteJobsRequest(queue=Q, job_ids=[world.completed, world.active])
        ),
        PRECONDITION,
        "WRONG_STATE",
    )
    assert world.active in err.message


async def test_delete_by_state_and_filter(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_200, headers={"tenant": "a"}))
    await enqueue(stub, specs(30, headers={"tenant": "b"}))
    await fail_leased(stub, 1_230, fatal())
    await enqueue(stub, specs(5))
    tenant_a = apb.JobFilter(header_key="tenant", header_value="a")
    reply = await admin.DeleteJobs(apb.DeleteJobsRequest(queue=Q, state=DEAD, filter=tenant_a))
    assert reply.deleted == 1_200
    assert await redis.zcard(key(prefix, "dead")) == 30
    group = fingerprint("Fatal", "boom")[0]
    assert await redis.zcard(key(prefix, f"dlg:{group}")) == 30
    ready = job_pb2.JOB_STATE_READY
    assert (await admin.DeleteJobs(apb.DeleteJobsRequest(queue=Q, state=ready))).deleted == 5
    assert await redis.zcard(key(prefix, "ready")) == 0


# -- PromoteJobs ---------------------------------------------------------------------------


async def test_promote_makes_scheduled_jobs_ready_now(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    first, second, third = await enqueue(stub, specs(3, delay=ms(3_600_000)))
    now = int(time.time() * 1000)
    reply = await admin.PromoteJobs(apb.PromoteJobsRequest(queue=Q, job_ids=[second]))
    assert reply.promoted == 1
    job = (await stub.GetJob(pb.GetJobRequest(job_id=second))).job
    assert job.state == job_pb2.JOB_STATE_READY and abs(millis(job.run_time) - now) < 5_000
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=5))).jobs
    assert leased.job.id == second
    last = (await queue_events(redis, prefix))[-2]  # before the lease
    assert (last[b"kind"], last[b"job"]) == (b"ready", seq(second).encode())

    await enqueue(stub, specs(1_500, delay=ms(60_000)))
    reply = await admin.PromoteJobs(apb.PromoteJobsRequest(queue=Q))
    assert reply.promoted == 1_502
    assert await redis.zcard(key(prefix, "scheduled")) == 0
    assert (await list_ids(admin, job_pb2.JOB_STATE_READY, page_size=1000))[:2] == [first, third]


async def test_promote_by_ids_refuses_jobs_that_are_not_scheduled(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: admin.PromoteJobs(
            apb.PromoteJobsRequest(queue=Q, job_ids=[world.scheduled, world.ready])
        ),
        PRECONDITION,
        "WRONG_STATE",
    )
    assert world.ready in err.message and "scheduled" in err.message
    await rejected(
        redis,
        prefix,
        lambda: admin.PromoteJobs(apb.PromoteJobsRequest(queue=Q, job_ids=[f"{Q}:404"])),
        NOT_FOUND,
        "JOB_NOT_FOUND",
    )


async def test_watchers_see_jobs_promoted_and_retried(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    (later,) = await enqueue(stub, specs(1, delay=ms(3_600_000)))
    stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=later))
    events = aiter(stream)
    snapshot_event = await anext(events)
    assert snapshot_event.job.state == job_pb2.JOB_STATE_SCHEDULED
    await admin.PromoteJobs(apb.PromoteJobsRequest(queue=Q, job_ids=[later]))
    changed = await asyncio.wait_for(anext(events), 5)
    assert changed.kind == pb.EVENT_KIND_STATE_CHANGED
    assert changed.job.state == job_pb2.JOB_STATE_READY
    stream.cancel()

    (dead,) = await fail_leased(stub, 1, fatal())  # the promoted job, watched since
    entries = await redis.xlen(key(prefix, f"events:{seq(dead)}"))
    await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[dead]))
    (_, last), *_ = await redis.xrevrange(key(prefix, f"events:{seq(dead)}"), count=1)
    assert await redis.xlen(key(prefix, f"events:{seq(dead)}")) == entries + 1
    assert (last[b"kind"], last[b"state"], last[b"attempt"]) == (b"state", b"ready", b"1")


# -- bad input: INVALID_ARGUMENT naming each field, nothing written -----------------------


def token_for(state: int, order: int, queue: str = Q, at: tuple[str, str] = ("1", "1")) -> str:
    from jobwire_broker.domain.jobs_admin import Position, page_token
    from jobwire_broker.domain.model import JobState

    names = {job_pb2.JOB_STATE_DEAD: JobState.DEAD, job_pb2.JOB_STATE_READY: JobState.READY}
    return page_token(queue, names[state].value, order == NEWEST, Position(*at))


LIST_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_queue", {"queue": ""}, ["queue"]),
    ("bad_queue", {"queue": "no spaces"}, ["queue"]),
    ("no_state", {"state": 0}, ["state"]),
    ("unknown_state", {"state": 99}, ["state"]),
    ("unknown_order", {"order": 7}, ["order"]),
    ("page_size_negative", {"page_size": -1}, ["page_size"]),
    ("page_size_1001", {"page_size": 1001}, ["page_size"]),
    ("token_garbage", {"page_token": "not-a-token"}, ["page_token"]),
    ("token_too_long", {"page_token": "A" * 2000}, ["page_token"]),
    (
        "token_of_another_state",
        {"page_token": token_for(job_pb2.JOB_STATE_READY, OLDEST)},
        ["page_token"],
    ),
    ("token_of_another_order", {"page_token": token_for(DEAD, NEWEST)}, ["page_token"]),
    ("token_of_another_queue", {"page_token": token_for(DEAD, OLDEST, "other")}, ["page_token"]),
    ("token_bad_score", {"page_token": token_for(DEAD, OLDEST, at=("1)", "1"))}, ["page_token"]),
    ("token_bad_member", {"page_token": token_for(DEAD, OLDEST, at=("1", "01"))}, ["page_token"]),
    ("header_value_alone", {"filter": apb.JobFilter(header_value="v")}, ["filter.header_value"]),
    (
        "bad_fingerprint",
        {"filter": apb.JobFilter(error_fingerprint="XYZ")},
        ["filter.error_fingerprint"],
    ),
    ("long_error_type", {"filter": apb.JobFilter(error_type="e" * 257)}, ["filter.error_type"]),
    ("long_header_key", {"filter": apb.JobFilter(header_key="k" * 257)}, ["filter.header_key"]),
    (
        "long_header_value",
        {"filter": apb.JobFilter(header_key="k", header_value="v" * 4097)},
        ["filter.header_value"],
    ),
    ("two_at_once", {"queue": "", "page_size": 5000}, ["queue", "page_size"]),
]


@pytest.mark.parametrize(("case", "fields", "bad"), LIST_CASES, ids=[c[0] for c in LIST_CASES])
async def test_list_jobs_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.ListJobsRequest(**{"queue": Q, "state": DEAD, **fields})
    await rejected(redis, prefix, lambda: admin.ListJobs(request), BAD, INVALID, bad)


def ids_cases(
    allowed_state: int, refused_state: int
) -> list[tuple[str, dict[str, Any], list[str]]]:
    return [
        ("no_queue", {"queue": "", "state": allowed_state}, ["queue"]),
        ("neither_ids_nor_state", {}, ["state"]),
        ("ids_and_state", {"job_ids": [f"{Q}:1"], "state": allowed_state}, ["state"]),
        (
            "ids_and_filter",
            {"job_ids": [f"{Q}:1"], "filter": apb.JobFilter(error_type="E")},
            ["filter"],
        ),
        ("refused_state", {"state": refused_state}, ["state"]),
        ("unknown_state", {"state": 42}, ["state"]),
        ("101_ids", {"job_ids": [f"{Q}:{i}" for i in range(1, 102)]}, ["job_ids"]),
        ("malformed_id", {"job_ids": [f"{Q}:1", "nope"]}, ["job_ids[1]"]),
        ("id_of_another_queue", {"job_ids": [f"{Q}:1", "other:2"]}, ["job_ids[1]"]),
        (
            "bad_filter",
            {"state": allowed_state, "filter": apb.JobFilter(header_value="v")},
            ["filter.header_value"],
        ),
    ]


RETRY_CASES = ids_cases(DEAD, job_pb2.JOB_STATE_READY)
DELETE_CASES = ids_cases(DEAD, job_pb2.JOB_STATE_ACTIVE)


@pytest.mark.parametrize(("case", "fields", "bad"), RETRY_CASES, ids=[c[0] for c in RETRY_CASES])
async def test_retry_jobs_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.RetryJobsRequest(**{"queue": Q, **fields})
    await rejected(redis, prefix, lambda: admin.RetryJobs(request), BAD, INVALID, bad)


@pytest.mark.parametrize(("case", "fields", "bad"), DELETE_CASES, ids=[c[0] for c in DELETE_CASES])
async def test_delete_jobs_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.DeleteJobsRequest(**{"queue": Q, **fields})
    await rejected(redis, prefix, lambda: admin.DeleteJobs(request), BAD, INVALID, bad)


PROMOTE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_queue", {"queue": ""}, ["queue"]),
    ("101_ids", {"job_ids": [f"{Q}:{i}" for i in range(1, 102)]}, ["job_ids"]),
    ("malformed_id", {"job_ids": ["q:0"]}, ["job_ids[0]"]),
    ("id_of_another_queue", {"job_ids": ["other:2"]}, ["job_ids[0]"]),
]


@pytest.mark.parametrize(
    ("case", "fields", "bad"), PROMOTE_CASES, ids=[c[0] for c in PROMOTE_CASES]
)
async def test_promote_jobs_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.PromoteJobsRequest(**{"queue": Q, **fields})
    await rejected(redis, prefix, lambda: admin.PromoteJobs(request), BAD, INVALID, bad)


async def test_unknown_queues_are_not_found_for_every_job_rpc(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    calls = [
        lambda: admin.ListJobs(apb.ListJobsRequest(queue="ghost", state=DEAD)),
        lambda: admin.RetryJobs(apb.RetryJobsRequest(queue="ghost", job_ids=["ghost:1"])),
        lambda: admin.RetryJobs(apb.RetryJobsRequest(queue="ghost", state=DEAD)),
        lambda: admin.DeleteJobs(apb.DeleteJobsRequest(queue="ghost", job_ids=["ghost:1"])),
        lambda: admin.DeleteJobs(apb.DeleteJobsRequest(queue="ghost", state=DEAD)),
        lambda: admin.PromoteJobs(apb.PromoteJobsRequest(queue="ghost")),
        lambda: admin.PromoteJobs(apb.PromoteJobsRequest(queue="ghost", job_ids=["ghost:1"])),
    ]
    for call in calls:
        err = await rejected(redis, prefix, call, NOT_FOUND, "QUEUE_NOT_FOUND")
        assert "ghost" in err.message


async def test_reads_and_empty_changes_write_nothing(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    before = await snapshot(redis, prefix)
    for state in range(1, 7):
        await list_ids(admin, state)
    cancelled = job_pb2.JOB_STATE_CANCELLED
    assert (await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, state=cancelled))).retried == 0
    filtered = apb.DeleteJobsRequest(queue=Q, state=DEAD, filter=apb.JobFilter(error_type="x"))
    assert (await admin.DeleteJobs(filtered)).deleted == 0
    assert_unchanged(before, await snapshot(redis, prefix))
