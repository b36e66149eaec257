"""The Python worker runtime against a real broker: concurrency, heartbeats, retries,
cancellation, lease loss."""

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from jobwire import (
    Backoff,
    Client,
    Job,
    JobState,
    NonRetryable,
    RetryAfter,
    Worker,
    job_spec,
)
from jobwire_broker.server import BrokerApp
from support import eventually


@pytest.fixture
def target(broker: BrokerApp) -> str:
    return f"127.0.0.1:{broker.port}"


@pytest.fixture
async def client(target: str) -> AsyncIterator[Client]:
    async with Client(target) as c:
        yield c


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def finished(client: Client, job_id: str, timeout_s: float = 20.0) -> JobState:
    async def done() -> bool:
        return (await client.get(job_id)).state.terminal

    await eventually(done, timeout_s)
    return (await client.get(job_id)).state


async def test_concurrency_20_processes_2000_jobs_once_each(target: str, client: Client) -> None:
    runs: dict[str, list[tuple[float, float]]] = {}
    running_now, peak = 0, 0

    worker = Worker(target, concurrency=20, lease_wait=1)

    @worker.handler("bulk")
    async def handle(job: Job) -> int:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        start = time.monotonic()
        await asyncio.sleep(0.002)
        running_now -= 1
        runs.setdefault(job.id, []).append((start, time.monotonic()))
        return job.attempt

    ids = []
    for start in range(0, 2000, 500):
        results = await client.enqueue_batch("bulk", [{"n": i} for i in range(start, start + 500)])
        ids += [r.job_id for r in results]
    async with running(worker):
        await eventually(lambda: _true(len(runs) == len(ids)), 60)
        for job_id in ids[-20:]:
            assert await finished(client, job_id) is JobState.COMPLETED
    assert sorted(runs) == sorted(ids)
    assert all(len(r) == 1 for r in runs.values()), "a job ran twice"
    assert 1 < peak <= 20
    states = {(await client.get(i)).state for i in ids[::7]}
    assert states == {JobState.COMPLETED}


async def test_heartbeats_keep_a_long_job_alive(target: str, client: Client) -> None:
    attempts: list[int] = []
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("slow")
    async def slow(job: Job) -> str:
        attempts.append(job.attempt)
        await asyncio.sleep(3.2)  # more than 3x the 1 s lease
        return "done"

    job = await client.enqueue("slow", b"", lease_duration=1)
    async with running(worker):
        assert await finished(client, job.job_id) is JobState.COMPLETED
    assert attempts == [1]
    assert (await client.get(job.job_id)).result == b"done"


async def test_without_heartbeats_the_job_is_leased_again_after_expiry(
    target: str, client: Client
) -> None:
    attempts: list[int] = []
    worker = Worker(target, concurrency=2, heartbeat=False, lease_wait=1)

    @worker.handler("slow")
    async def slow(job: Job) -> str:
        attempts.append(job.attempt)
        await asyncio.sleep(3.2 if job.attempt == 1 else 0)
        return f"attempt {job.attempt}"

    job = await client.enqueue(
        "slow", b"", lease_duration=1, backoff=Backoff.fixed(0.0), max_attempts=3
    )
    async with running(worker):
        assert await finished(client, job.job_id) is JobState.COMPLETED
        await asyncio.sleep(2.5)  # the first attempt finishes; its result must not count
    info = await client.get(job.job_id)
    assert attempts == [1, 2]
    assert info.result == b"attempt 2" and info.attempt == 2


async def test_plain_exception_retries_with_backoff(target: str, client: Client) -> None:
    seen: list[tuple[int, float]] = []
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("flaky")
    async def flaky(job: Job) -> str:
        seen.append((job.attempt, time.monotonic()))
        if job.attempt < 3:
            raise ConnectionError("upstream refused")
        return "ok"

    job = await client.enqueue(
        "flaky", b"", max_attempts=5, backoff=Backoff.exponential(initial=0.3, multiplier=2)
    )
    async with running(worker):
        assert await finished(client, job.job_id) is JobState.COMPLETED
    assert [a for a, _ in seen] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(seen)]
    assert 0.3 <= gaps[0] < 0.3 + 1.0 and 0.6 <= gaps[1] < 0.6 + 1.0, gaps
    info = await client.get(job.job_id)
    assert info.last_error is not None and info.last_error.type == "ConnectionError"


async def test_non_retryable_goes_straight_to_dead(target: str, client: Client) -> None:
    class BadWallet(NonRetryable):
        pass

    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("wallets")
    async def analyse(job: Job) -> None:
        raise BadWallet("no such wallet")

    job = await client.enqueue("wallets", b"", max_attempts=5)
    async with running(worker):
        assert await finished(client, job.job_id) is JobState.DEAD
    info = await client.get(job.job_id)
    assert info.attempt == 1
    assert info.last_error is not None
    assert (info.last_error.type, info.last_error.message) == ("BadWallet", "no such wallet")
    assert info.last_error.non_retryable


async def test_retry_after_delays_by_what_it_says(target: str, client: Client) -> None:
    starts: list[float] = []
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("limited")
    async def limited(job: Job) -> str:
        starts.append(time.monotonic())
        if job.attempt == 1:
            raise RetryAfter(1.2, "rate limited")
        return "ok"

    job = await client.enqueue("limited", b"", backoff=Backoff.fixed(0.0))
    async with running(worker):
        assert await finished(client, job.job_id) is JobState.COMPLETED
    assert 1.2 <= starts[1] - starts[0] < 2.2


async def test_cancelling_an_active_job_cancels_its_handler(target: str, client: Client) -> None:
    started, cancelled_at = asyncio.Event(), []
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("long")
    async def long(job: Job) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled_at.append(time.monotonic())
            raise

    job = await client.enqueue("long", b"", lease_duration=3)  # heartbeat every 1 s
    async with running(worker):
        await asyncio.wait_for(started.wait(), 10)
        asked = time.monotonic()
        assert await client.cancel(job.job_id) is JobState.ACTIVE
        assert await finished(client, job.job_id) is JobState.CANCELLED
    assert cancelled_at and cancelled_at[0] - asked <= 1.0 + 0.5  # within one interval


async def test_lost_lease_cancels_the_handler_and_drops_its_result(
    target: str, client: Client, broker: BrokerApp
) -> None:
    started = asyncio.Event()
    outcome: list[str] = []
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("stolen")
    async def stolen(job: Job) -> str:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        return "never"

    job = await client.enqueue("stolen", b"", lease_duration=3)
    async with running(worker):
        await asyncio.wait_for(started.wait(), 10)
        # Someone else takes the job over: its lease token changes under the worker.
        store = broker.store
        await store.client.hset(f"{store.prefix}:{{stolen}}:job:1", "token", "someone-else")
        await eventually(lambda: _true(bool(outcome)), 5)
    assert outcome == ["cancelled"]
    assert (await client.get(job.job_id)).state is JobState.ACTIVE  # untouched by the worker


async def _true(value: bool) -> bool:
    return value


async def test_sync_handlers_run_in_threads(target: str, client: Client) -> None:
    import threading

    threads: set[str] = set()
    worker = Worker(target, concurrency=4, lease_wait=1)

    @worker.handler("cpu")
    def crunch(job: Job) -> dict[str, Any]:
        threads.add(threading.current_thread().name)
        job.progress(50, "halfway")
        time.sleep(0.05)
        return {"sum": sum(job.json())}

    jobs = await client.enqueue_batch("cpu", [[1, 2, 3]] * 8)
    async with running(worker):
        for j in jobs:
            assert await finished(client, j.job_id) is JobState.COMPLETED
    assert (await client.get(jobs[0].job_id)).result_json() == {"sum": 6}
    assert all(name.startswith("jobwire-handler") for name in threads)


async def test_result_encoding(target: str, client: Client) -> None:
    results: dict[str, Callable[[], Any]] = {
        "bytes": lambda: b"\x00\xff",
        "text": lambda: "héllo",
        "json": lambda: {"n": 0},
        "zero": lambda: 0,
        "none": lambda: None,
    }
    worker = Worker(target, concurrency=5, lease_wait=1)

    @worker.handler("results")
    async def produce(job: Job) -> Any:
        return results[job.payload.decode()]()

    ids = {}
    for name in results:
        ids[name] = (await client.enqueue("results", name.encode())).job_id
    async with running(worker):
        for job_id in ids.values():
            assert await finished(client, job_id) is JobState.COMPLETED
    got = {name: await client.get(i) for name, i in ids.items()}
    assert got["bytes"].result == b"\x00\xff"
    assert got["text"].result == "héllo".encode() and got["text"].result_content_type.startswith(
        "text/plain"
    )
    assert got["json"].result_json() == {"n": 0}
    assert got["zero"].result == b"0" and got["none"].result == b""


async def test_per_job_options_in_a_batch(target: str, client: Client) -> None:
    specs = [job_spec({"n": 1}, priority=5, headers={"tenant": "t-1"}), job_spec(b"raw")]
    results = await client.enqueue_batch("opts", specs)
    first = await client.get(results[0].job_id)
    assert first.priority == 5 and first.headers == {"tenant": "t-1"}
    assert first.content_type == "application/json"


async def test_progress_soon_after_the_lease_reaches_watchers(target: str, client: Client) -> None:
    worker = Worker(target, concurrency=1, lease_wait=1)

    @worker.handler("steps")
    async def steps(job: Job) -> None:
        job.progress(25, "first")  # right after the lease: within progress_interval
        await asyncio.sleep(0.6)
        job.progress(50, "second")
        await asyncio.sleep(0.6)

    job = await client.enqueue("steps", b"")
    async with running(worker):
        seen = [e.progress.percent async for e in client.watch(job.job_id) if e.progress]
    assert 25 in seen and 50 in seen


async def test_an_idle_worker_stops_well_within_its_long_poll(target: str) -> None:
    worker = Worker(target, concurrency=2, lease_wait=5)

    @worker.handler("idle")
    async def idle(job: Job) -> None:
        return None

    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    await asyncio.sleep(0.5)  # parked in a 5 s long-poll
    start = time.monotonic()
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert time.monotonic() - start < 2


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_progress_reported_right_before_returning_reaches_get_and_watch(
    target: str, client: Client, sync: bool
) -> None:
    """The README's send_email: progress, then return at once. The progress is sent
    before the completion, so GetJob keeps it and a watcher sees it first."""
    worker = Worker(target, concurrency=1, lease_wait=1)

    def send_email(job: Job) -> dict[str, str]:
        job.progress(50, "half")
        return {"status": "sent"}

    async def send_email_async(job: Job) -> dict[str, str]:
        return send_email(job)

    worker.register("emails", send_email if sync else send_email_async)
    job = await client.enqueue("emails", {"to": "ada@example.com"})
    events: list[tuple[str, str, float | None, str | None]] = []
    watching_from_start = asyncio.Event()

    async def watch() -> None:
        async for e in client.watch(job.job_id):
            p = e.progress
            events.append((e.kind, e.state.name, p and p.percent, p and p.message))
            watching_from_start.set()

    watching = asyncio.create_task(watch())
    await asyncio.wait_for(watching_from_start.wait(), 10)
    async with running(worker):
        await asyncio.wait_for(watching, 20)
    info = await client.get(job.job_id)
    assert info.state is JobState.COMPLETED
    assert info.progress is not None
    assert (info.progress.percent, info.progress.message) == (50, "half")
    kinds = [(kind, state) for kind, state, _, _ in events]
    assert ("progress", "ACTIVE") in kinds, events
    progress_at = kinds.index(("progress", "ACTIVE"))
    assert events[progress_at][2:] == (50, "half")
    assert events[-1][:2] == ("state", "COMPLETED") and progress_at < len(events) - 1


async def test_twelve_jobs_of_one_mib_run_once_each_with_default_options(
    target: str, client: Client
) -> None:
    """Issue 8, defect 1: big jobs are leased only as many as a reply can carry, and
    each runs exactly once on its first attempt (none stranded, none charged)."""
    runs: dict[str, int] = {}
    worker = Worker(target, concurrency=10)

    @worker.handler("big")
    async def handle(job: Job) -> None:
        assert len(job.payload) == 1 << 20
        runs[job.id] = runs.get(job.id, 0) + 1
        await asyncio.sleep(0.05)

    ids = [(await client.enqueue("big", bytes([i]) * (1 << 20))).job_id for i in range(12)]
    async with running(worker):
        await eventually(lambda: _true(len(runs) == 12), 30)
        for job_id in ids:
            assert await finished(client, job_id) is JobState.COMPLETED
    assert runs == {job_id: 1 for job_id in ids}
    assert {(await client.get(i)).attempt for i in ids} == {1}
