"""The Python SDK's admin client against a real broker: every AdminService method through
`Admin` (asyncio) and `SyncAdmin` (blocking), its models, errors and retries, and
WatchQueue resuming across a broker restart."""

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from helpers import enqueue, lease, ms
from jobwire import (
    Admin,
    Backoff,
    BackoffKind,
    Client,
    FailedPrecondition,
    InvalidArgument,
    JobFilter,
    JobState,
    NotFound,
    QueueEventKind,
    QueueSettings,
    RetryPolicy,
    SyncAdmin,
    SyncClient,
    Unavailable,
    WorkerState,
)
from jobwire._admin import IDEMPOTENT, client_retried
from jobwire.v1 import admin_service_pb2 as admin_pb
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.embedded import free_port
from jobwire_broker.server import BrokerApp
from support import BrokerProcess, RedisServer


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[Admin]:
    async with Admin(f"127.0.0.1:{broker.port}") as a:
        yield a


@pytest.fixture
async def client(broker: BrokerApp) -> AsyncIterator[Client]:
    async with Client(f"127.0.0.1:{broker.port}") as c:
        yield c


async def make_dead(
    stub: rpc.BrokerServiceStub,
    queue: str,
    n: int,
    error_type: str = "TimeoutError",
    message: str = "call to 10.0.0.{i} timed out after {i} ms",
    worker_id: str = "",
) -> list[str]:
    """Enqueues `n` jobs with one attempt each, leases them and fails them: `n` dead jobs
    whose messages differ only in numbers (one dead-letter group). Returns their ids."""
    ids: list[str] = []
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        jobs = [job_pb2.JobSpec(payload=b"{}", max_attempts=1) for _ in range(count)]
        reply = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=jobs))
        ids += [r.job_id for r in reply.results]
        leased = (
            await stub.Lease(pb.LeaseRequest(queue=queue, max_jobs=count, worker_id=worker_id))
        ).jobs
        assert len(leased) == count
        settlements = [
            pb.Settlement(
                fail=pb.FailRequest(
                    job_id=j.job.id,
                    lease_token=j.lease_token,
                    error=job_pb2.JobError(
                        type=error_type, message=message.format(i=start + k), non_retryable=True
                    ),
                )
            )
            for k, j in enumerate(leased)
        ]
        await stub.SettleBatch(pb.SettleBatchRequest(settlements=settlements))
    return ids


# -- queues ---------------------------------------------------------------------------


async def test_list_and_get_queues_with_counts(admin: Admin, stub: rpc.BrokerServiceStub) -> None:
    for _ in range(3):
        await enqueue(stub, "alpha")
    await enqueue(stub, "alpha", delay=ms(600_000))
    await enqueue(stub, "beta")
    await lease(stub, "beta")
    await make_dead(stub, "gamma", 2)

    queues = {q.name: q for q in await admin.list_queues()}
    assert {"alpha", "beta", "gamma"} <= set(queues)
    alpha = queues["alpha"]
    assert (alpha.counts.ready, alpha.counts.scheduled, alpha.counts.total) == (3, 1, 4)
    assert not alpha.paused
    assert alpha.oldest_ready_age is not None and alpha.oldest_ready_age >= 0
    assert queues["beta"].counts.active == 1
    assert queues["gamma"].counts.dead == 2
    assert alpha.last_hour == ()  # only GetQueue fills it

    gamma = await admin.get_queue("gamma")
    assert gamma.name == "gamma" and gamma.counts.dead == 2
    assert gamma.failed_last_minute >= 2
    assert len(gamma.last_hour) == 60
    assert sum(m.dead for m in gamma.last_hour) == 2
    # Unset settings show the broker's defaults in effective_settings.
    assert gamma.settings == QueueSettings()
    assert gamma.effective_settings.max_attempts == 3
    assert gamma.effective_settings.lease_duration == 30.0


async def test_update_queue_with_and_without_a_mask(admin: Admin, client: Client) -> None:
    settings = QueueSettings(
        max_attempts=7,
        backoff=Backoff.fixed(2),
        lease_duration=45,
        keep_dead=500,
        dead_max_age=3 * 86400,
    )
    created = await admin.update_queue("tuned", settings)  # creates the queue
    assert created.name == "tuned"
    assert created.settings == QueueSettings(
        max_attempts=7,
        backoff=Backoff(BackoffKind.FIXED, 2.0, 2.0, 2.0, 0.0),
        lease_duration=45.0,
        keep_dead=500,
        dead_max_age=259200.0,
    )
    assert created.effective_settings.max_attempts == 7
    assert created.effective_settings.keep_completed == 10_000  # a default

    # The mask names what changes: max_attempts back to the default, priority set.
    changed = await admin.update_queue(
        "tuned", QueueSettings(priority=5, keep_dead=1), ["max_attempts", "priority"]
    )
    assert changed.settings.max_attempts is None
    assert changed.effective_settings.max_attempts == 3
    assert (changed.settings.priority, changed.settings.keep_dead) == (5, 500)

    # A job that leaves an option unset gets the queue's default.
    job = await client.enqueue("tuned", b"x")
    info = await client.get(job.job_id)
    assert (info.priority, info.max_attempts) == (5, 3)

    # A protobuf QueueSettings works as well (what the settings file yields).
    raw = await admin.update_queue("tuned", admin_pb.QueueSettings(event_history=10))
    assert raw.settings.event_history == 10


async def test_pause_resume_drain_and_delete(admin: Admin, stub: rpc.BrokerServiceStub) -> None:
    await enqueue(stub, "ops")
    await admin.pause_queue("ops")
    await admin.pause_queue("ops")  # a no-op
    assert (await admin.get_queue("ops")).paused
    assert await lease(stub, "ops") == []
    await admin.resume_queue("ops")
    assert not (await admin.get_queue("ops")).paused

    await enqueue(stub, "ops")
    await enqueue(stub, "ops", delay=ms(600_000))
    held = await lease(stub, "ops")
    assert len(held) == 1
    assert await admin.drain_queue("ops") == 2
    counts = (await admin.get_queue("ops")).counts
    assert (counts.ready, counts.scheduled, counts.active) == (0, 0, 1)

    with pytest.raises(FailedPrecondition) as busy:
        await admin.delete_queue("ops")
    assert busy.value.reason == "QUEUE_BUSY"
    assert await admin.delete_queue("ops", force=True) == 1
    with pytest.raises(NotFound) as gone:
        await admin.get_queue("ops")
    assert gone.value.reason == "QUEUE_NOT_FOUND"


# -- jobs -----------------------------------------------------------------------------


async def test_list_jobs_pages_and_iter_jobs_sees_each_once(
    admin: Admin, stub: rpc.BrokerServiceStub
) -> None:
    ids = await make_dead(stub, "paged", 25)
    await make_dead(stub, "paged", 5, error_type="KeyError", message="no key 'x{i}'")

    first = await admin.list_jobs("paged", JobState.DEAD, page_size=10)
    assert len(first.jobs) == 10 and first.next_page_token
    assert all(j.state is JobState.DEAD for j in first.jobs)
    assert first.jobs[0].last_error is not None
    assert first.jobs[0].payload == b""  # payloads only on request

    every = [j.id async for j in admin.iter_jobs("paged", JobState.DEAD, page_size=7)]
    assert len(every) == len(set(every)) == 30
    assert set(every[:25]) == set(ids)  # oldest first (ties in one ms: by member)

    newest = [
        j.id async for j in admin.iter_jobs("paged", JobState.DEAD, newest_first=True, limit=3)
    ]
    assert len(newest) == 3 and newest == every[::-1][:3]

    timeouts = [
        j
        async for j in admin.iter_jobs(
            "paged",
            JobState.DEAD,
            filter=JobFilter(error_type="KeyError"),
            page_size=2,
            include_payloads=True,
        )
    ]
    assert len(timeouts) == 5
    assert {j.last_error.type for j in timeouts if j.last_error} == {"KeyError"}
    assert {j.payload for j in timeouts} == {b"{}"}


async def test_retry_delete_and_promote_jobs(admin: Admin, stub: rpc.BrokerServiceStub) -> None:
    dead = await make_dead(stub, "fix", 6)
    assert await admin.retry_jobs("fix", dead[:2]) == 2
    assert await admin.retry_jobs("fix", state=JobState.DEAD) == 4
    counts = (await admin.get_queue("fix")).counts
    assert (counts.ready, counts.dead) == (6, 0)

    with pytest.raises(FailedPrecondition) as wrong:
        await admin.retry_jobs("fix", [dead[0]])  # ready now: not dead or cancelled
    assert wrong.value.reason == "WRONG_STATE"
    with pytest.raises(NotFound) as missing:
        await admin.retry_jobs("fix", ["fix:999"])
    assert missing.value.reason == "JOB_NOT_FOUND"

    assert await admin.delete_jobs("fix", dead[:1]) == 1
    assert await admin.delete_jobs("fix", state=JobState.READY) == 5

    later = [await enqueue(stub, "fix", delay=ms(600_000)) for _ in range(3)]
    assert await admin.promote_jobs("fix", later[:1]) == 1
    assert await admin.promote_jobs("fix") == 2
    assert (await admin.get_queue("fix")).counts.ready == 3


# -- dead letters ---------------------------------------------------------------------


async def test_dead_letter_groups_redrive_and_purge(
    admin: Admin, stub: rpc.BrokerServiceStub
) -> None:
    await make_dead(stub, "dlq", 30)
    await make_dead(stub, "dlq", 4, error_type="ValueError", message="bad order {i}")

    groups = [g async for g in admin.iter_dead_letter_groups("dlq", page_size=1)]
    assert sorted(g.count for g in groups) == [4, 30]
    timeout = next(g for g in groups if g.error_type == "TimeoutError")
    assert len(timeout.fingerprint) == 16
    assert "<ip>" in timeout.message_template and "<n>" in timeout.message_template
    assert timeout.sample_job_id.startswith("dlq:")
    assert timeout.first_seen_at is not None and timeout.last_seen_at is not None
    assert timeout.first_seen_at <= timeout.last_seen_at
    page = await admin.list_dead_letter_groups("dlq")
    assert len(page.groups) == 2 and page.next_page_token == ""

    dry = [p async for p in admin.redrive_dead_letters("dlq", timeout.fingerprint, dry_run=True)]
    assert dry[-1].matched == 30 and dry[-1].done and dry[-1].redriven == 0
    assert (await admin.get_queue("dlq")).counts.dead == 34

    started = time.monotonic()
    progress = [
        p async for p in admin.redrive_dead_letters("dlq", timeout.fingerprint, rate=40, limit=20)
    ]
    elapsed = time.monotonic() - started
    assert progress[0].matched == 20
    assert progress[-1].done and progress[-1].redriven == 20
    assert [p.redriven for p in progress] == sorted(p.redriven for p in progress)
    assert elapsed >= 0.3  # 20 jobs at 40/s: about half a second
    counts = (await admin.get_queue("dlq")).counts
    assert (counts.ready, counts.dead) == (20, 14)

    assert await admin.purge_dead_letters("dlq", timeout.fingerprint, dry_run=True) == 10
    assert await admin.purge_dead_letters("dlq", older_than=3600) == 0
    assert await admin.purge_dead_letters("dlq", timeout.fingerprint) == 10
    assert await admin.purge_dead_letters("dlq", all=True) == 4
    assert (await admin.get_queue("dlq")).counts.dead == 0


async def test_leaving_a_redrive_early_stops_it(admin: Admin, stub: rpc.BrokerServiceStub) -> None:
    await make_dead(stub, "slow", 50)
    seen = 0
    async for progress in admin.redrive_dead_letters("slow", rate=20):
        seen = progress.redriven
        if progress.redriven >= 3:
            break
    await asyncio.sleep(0.5)
    first = (await admin.get_queue("slow")).counts.dead
    await asyncio.sleep(0.5)
    assert (await admin.get_queue("slow")).counts.dead == first  # nothing moves any more
    assert first >= 50 - seen - 15


# -- events and workers ---------------------------------------------------------------


async def test_watch_queue_delivers_the_queue_events_in_order(
    admin: Admin, stub: rpc.BrokerServiceStub
) -> None:
    await admin.update_queue("watched", QueueSettings())
    events: list = []
    ready = asyncio.Event()

    async def watch() -> None:
        async for event in admin.watch_queue("watched", "0"):
            events.append(event)
            ready.set()
            if event.kind is QueueEventKind.RESUMED:
                return

    task = asyncio.create_task(watch())
    job_id = await enqueue(stub, "watched")
    await asyncio.wait_for(ready.wait(), 10)
    [held] = await lease(stub, "watched")
    await stub.Fail(
        pb.FailRequest(
            job_id=held.job.id,
            lease_token=held.lease_token,
            error=job_pb2.JobError(type="Boom", message="no", non_retryable=True),
        )
    )
    await admin.pause_queue("watched")
    await admin.resume_queue("watched")
    await asyncio.wait_for(task, 10)

    kinds = [e.kind for e in events]
    assert kinds == [
        QueueEventKind.ENQUEUED,
        QueueEventKind.LEASED,
        QueueEventKind.DEAD,
        QueueEventKind.PAUSED,
        QueueEventKind.RESUMED,
    ]
    assert events[0].job_id == job_id and events[0].state is JobState.READY
    assert events[1].attempt == 1 and events[1].state is JobState.ACTIVE
    assert events[2].error is not None and events[2].error.type == "Boom"
    assert events[3].job_id == "" and events[3].state is None
    assert all(e.at is not None for e in events) and not any(e.gap for e in events)

    # Resuming after an event id continues right after it.
    after = [e.kind async for e in _take(admin.watch_queue("watched", events[1].id), 3)]
    assert after == kinds[2:]


async def _take(events: AsyncIterator, n: int) -> AsyncIterator:
    count = 0
    async for event in events:
        yield event
        count += 1
        if count == n:
            return


async def test_watch_queue_resumes_after_a_broker_restart(
    redis_server: RedisServer, prefix: str
) -> None:
    port = free_port()
    args = ("--redis-url", redis_server.url, "--key-prefix", prefix)
    args += ("--listen", f"127.0.0.1:{port}")
    broker = BrokerProcess(*args)
    target = f"127.0.0.1:{port}"
    try:
        async with Client(target) as client:
            admin = Admin.from_client(client)
            await client.enqueue("restart", b"")
            seen: list[str] = []
            async for event in admin.watch_queue("restart", "0"):
                seen.append(event.job_id)
                if len(seen) == 1:
                    broker.kill()  # the stream drops; these land while no broker runs
                    broker = BrokerProcess(*args)
                    for n in range(3):  # with a key, so retried until the broker is back
                        await client.enqueue("restart", b"", idempotency_key=f"k{n}")
                if len(seen) == 4:
                    break
            await admin.close()  # shares the client's channel: leaves it open
            assert (await client.get("restart:1")).state is JobState.READY
        assert seen == ["restart:1", "restart:2", "restart:3", "restart:4"]
    finally:
        broker.kill()


async def test_list_workers(admin: Admin, stub: rpc.BrokerServiceStub) -> None:
    await enqueue(stub, "busy")
    await enqueue(stub, "busy")
    await stub.Lease(pb.LeaseRequest(queue="busy", max_jobs=1, worker_id="w-busy"))
    await enqueue(stub, "calm", delay=ms(600_000))  # the queue exists, nothing is ready
    await stub.Lease(pb.LeaseRequest(queue="calm", max_jobs=1, worker_id="w-idle"))

    workers = {w.id: w for w in await admin.list_workers()}
    assert workers["w-busy"].state is WorkerState.ACTIVE
    assert workers["w-busy"].in_flight == 1 and workers["w-busy"].queues == ("busy",)
    assert workers["w-busy"].last_lease_at is not None
    assert workers["w-idle"].state is WorkerState.IDLE
    assert [w.id for w in await admin.list_workers("busy")] == ["w-busy"]
    assert "w-busy" in (await admin.get_queue("busy")).workers
    assert {w.id for w in await admin.list_workers(include_gone=True)} >= {"w-busy", "w-idle"}


# -- errors and retries ---------------------------------------------------------------


async def test_errors_name_fields_queues_and_states(admin: Admin) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await admin.update_queue("bad queue!", QueueSettings(max_attempts=0))
    assert {v.field for v in bad.value.violations} >= {"queue", "settings.max_attempts"}
    with pytest.raises(NotFound) as unknown:
        await admin.list_jobs("nope", JobState.DEAD)
    assert unknown.value.reason == "QUEUE_NOT_FOUND"
    with pytest.raises(NotFound):
        async for _ in admin.redrive_dead_letters("nope"):
            pass
    with pytest.raises(NotFound):
        async for _ in admin.watch_queue("nope"):
            pass


def test_the_client_retries_what_the_service_config_does_not() -> None:
    assert client_retried(None) <= IDEMPOTENT
    config = {
        "methodConfig": [
            {
                "name": [{"service": "jobwire.v1.AdminService", "method": "GetQueue"}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            },
            {"name": [{"service": "jobwire.v1.AdminService", "method": "ListJobs"}]},
        ]
    }
    retried = client_retried(json.dumps(config))
    assert "GetQueue" not in retried  # gRPC retries it
    assert "ListJobs" in retried and "RetryJobs" not in retried


async def test_an_unreachable_broker_is_unavailable_after_retries() -> None:
    target = f"127.0.0.1:{free_port()}"
    retry = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.01)
    async with Admin(target, retry=retry) as admin:
        with pytest.raises(Unavailable):
            await admin.list_queues()
        with pytest.raises(Unavailable):
            await admin.drain_queue("q")  # not retried, same error


# -- the blocking client --------------------------------------------------------------


def operate_from_plain_sync_code(target: str) -> dict[str, object]:
    """Every SyncAdmin method once, from code with no event loop."""
    out: dict[str, object] = {}
    with SyncClient(target) as client, SyncAdmin(target) as admin:
        shared = SyncAdmin.from_client(client)
        queue = admin.update_queue("sync", QueueSettings(max_attempts=1, lease_duration=60))
        out["settings"] = (queue.settings.max_attempts, queue.settings.lease_duration)
        for n in range(4):
            client.enqueue("sync", {"n": n}, headers={"n": str(n)})
        out["queues"] = [q.name for q in shared.list_queues()]
        shared.close()  # leaves the client's channel open
        admin.pause_queue("sync")
        out["paused"] = admin.get_queue("sync").paused
        admin.resume_queue("sync")
        page = admin.list_jobs("sync", JobState.READY, page_size=3)
        out["page"] = (len(page.jobs), bool(page.next_page_token))
        out["iter"] = [
            j.id for j in admin.iter_jobs("sync", JobState.READY, filter=JobFilter(header_key="n"))
        ]
        out["deleted"] = admin.delete_jobs("sync", ["sync:4"])
        out["retry_none"] = admin.retry_jobs("sync", state=JobState.DEAD)
        out["promoted"] = admin.promote_jobs("sync")
        out["groups"] = list(admin.iter_dead_letter_groups("sync"))
        out["group_page"] = admin.list_dead_letter_groups("sync").groups
        out["redrive"] = [p.matched for p in admin.redrive_dead_letters("sync", dry_run=True)]
        out["purged"] = admin.purge_dead_letters("sync", all=True)
        events = admin.watch_queue("sync", "0")
        out["first_event"] = next(events).kind
        events.close()
        out["workers"] = admin.list_workers("sync")
        out["drained"] = admin.drain_queue("sync")
        out["deleted_queue"] = admin.delete_queue("sync")
        try:
            admin.get_queue("sync")
        except NotFound as err:
            out["gone"] = err.reason
        out["client_alive"] = client.enqueue("other", b"").job_id
    return out


async def test_sync_admin_covers_every_method(broker: BrokerApp) -> None:
    out = await asyncio.to_thread(operate_from_plain_sync_code, f"127.0.0.1:{broker.port}")
    assert out["settings"] == (1, 60.0)
    assert out["queues"] == ["sync"]
    assert out["paused"] is True
    assert out["page"] == (3, True)
    assert out["iter"] == ["sync:1", "sync:2", "sync:3", "sync:4"]
    assert out["deleted"] == 1
    assert out["retry_none"] == 0
    assert out["promoted"] == 0
    assert out["groups"] == [] and out["group_page"] == []
    assert out["redrive"] == [0]
    assert out["purged"] == 0
    assert out["first_event"] is QueueEventKind.ENQUEUED
    assert out["workers"] == []
    assert out["drained"] == 3
    assert out["deleted_queue"] == 0
    assert out["gone"] == "QUEUE_NOT_FOUND"
    assert out["client_alive"] == "other:1"


# -- sharing a channel ----------------------------------------------------------------


async def test_from_client_shares_the_channel(broker: BrokerApp) -> None:
    async with Client(f"127.0.0.1:{broker.port}") as client:
        admin = Admin.from_client(client)
        assert admin.stub is not None and admin.client is client
        await client.enqueue("shared", b"")
        assert [q.name for q in await admin.list_queues()] == ["shared"]
        await admin.close()
        assert (await client.enqueue("shared", b"")).job_id == "shared:2"


def test_admin_models_round_trip_settings() -> None:
    settings = QueueSettings(
        max_attempts=2,
        backoff=Backoff.exponential(0.5, 60, 3, 0.2),
        execution_timeout=90,
        completed_max_age=3600,
        keep_completed=0,
        event_history=0,
    )
    proto = settings.to_proto()
    assert proto.HasField("keep_completed") and proto.keep_completed == 0
    assert not proto.HasField("priority")
    assert QueueSettings.from_proto(proto) == QueueSettings(
        max_attempts=2,
        backoff=Backoff(BackoffKind.EXPONENTIAL, 0.5, 60.0, 3.0, 0.2),
        execution_timeout=90.0,
        completed_max_age=3600.0,
        keep_completed=0,
        event_history=0,
    )
    assert settings.fields_set() == [
        "max_attempts",
        "backoff",
        "execution_timeout",
        "keep_completed",
        "completed_max_age",
        "event_history",
    ]
