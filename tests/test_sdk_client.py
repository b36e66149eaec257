"""The Python producer client: watch across a broker restart, the sync facade, error
mapping, and a worker process stopped with SIGTERM mid-work."""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobwire import (
    Client,
    InvalidArgument,
    Job,
    JobState,
    NotFound,
    SyncClient,
    Unavailable,
    Worker,
)
from jobwire_broker.embedded import free_port
from jobwire_broker.server import BrokerApp
from support import BrokerProcess, RedisServer, eventually

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def client(broker: BrokerApp) -> AsyncIterator[Client]:
    async with Client(f"127.0.0.1:{broker.port}") as c:
        yield c


async def test_watch_sees_progress_in_order_across_a_broker_restart(
    redis_server: RedisServer, prefix: str
) -> None:
    port = free_port()
    args = (
        "--redis-url",
        redis_server.url,
        "--key-prefix",
        prefix,
        "--listen",
        f"127.0.0.1:{port}",
    )
    broker = BrokerProcess(*args)
    target = f"127.0.0.1:{port}"
    step = asyncio.Event()
    worker = Worker(target, concurrency=1, lease_wait=1, progress_interval=0.05)

    @worker.handler("report")
    async def report(job: Job) -> str:
        job.progress(10, "started")
        await step.wait()
        for percent in (50, 100):
            job.progress(percent, f"at {percent}")
            await asyncio.sleep(0.4)
        return "done"

    running = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:
        async with Client(target) as client:
            job = await client.enqueue("report", b"")
            seen: list[tuple[str, float]] = []
            async for event in client.watch(job.job_id):
                seen.append((event.state.name, event.progress.percent if event.progress else 0))
                if event.progress and event.progress.percent == 10 and not step.is_set():
                    broker.kill()  # the watch stream and the worker lose the broker
                    broker = BrokerProcess(*args)
                    step.set()
        assert seen[-1] == ("COMPLETED", 100)
        progress = [p for state, p in seen if state == "ACTIVE" and p]
        assert progress == sorted(progress) and {10, 50, 100} <= set(progress)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 30)
        broker.kill()


def enqueue_from_plain_sync_code(target: str) -> tuple[str, str, str]:
    with SyncClient(target) as jobs:
        first = jobs.enqueue("sync", {"n": 1}, priority=3, headers={"k": "v"})
        batch = jobs.enqueue_batch("sync", [b"a", b"b"])
        info = jobs.get(first.job_id)
        assert info.priority == 3 and info.headers == {"k": "v"} and len(batch) == 2
        assert jobs.cancel(batch[0].job_id) is JobState.CANCELLED
        try:
            jobs.get("sync:999")
        except NotFound as err:
            return first.job_id, info.state.name, err.reason
    raise AssertionError("expected NotFound")


async def test_sync_facade_works_from_plain_synchronous_code(broker: BrokerApp) -> None:
    job_id, state, reason = await asyncio.to_thread(
        enqueue_from_plain_sync_code, f"127.0.0.1:{broker.port}"
    )
    assert (job_id, state, reason) == ("sync:1", "READY", "JOB_NOT_FOUND")


async def test_errors_carry_codes_and_field_violations(client: Client) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await client.enqueue("no spaces allowed", b"", priority=5000)
    assert {v.field for v in bad.value.violations} == {"queue", "job.priority"}
    with pytest.raises(NotFound) as missing:
        await client.get("q:12345")
    assert missing.value.reason == "JOB_NOT_FOUND"


async def test_unreachable_broker_is_unavailable_after_retries() -> None:
    from jobwire import RetryPolicy

    async with Client(
        f"127.0.0.1:{free_port()}", retry=RetryPolicy(attempts=3, initial_s=0.01)
    ) as client:
        start = time.monotonic()
        with pytest.raises(Unavailable):
            await client.get("q:1")
        assert time.monotonic() - start < 10


async def test_sigterm_finishes_running_jobs_hands_back_the_rest_and_exits_zero(
    broker: BrokerApp, client: Client
) -> None:
    jobs = await client.enqueue_batch("sleepy", [b"1.5"] * 12)
    env = {
        **os.environ,
        "JOBWIRE_TARGET": f"127.0.0.1:{broker.port}",
        "PYTHONPATH": str(ROOT / "tests/workers"),
    }
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobwire",
        "worker",
        "shutdown_app:worker",
        "--target",
        f"127.0.0.1:{broker.port}",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )

    async def some_active() -> bool:
        return (await client.get(jobs[0].job_id)).state is JobState.ACTIVE

    await eventually(some_active, 20)
    await asyncio.sleep(0.3)
    stopped_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.wait(), 20) == 0
    assert time.monotonic() - stopped_at < 10  # within the grace period

    states = [(await client.get(j.job_id)) for j in jobs]
    assert not [s for s in states if s.state is JobState.ACTIVE], "a job was left leased"
    done = [s for s in states if s.state is JobState.COMPLETED]
    back = [s for s in states if s.state is JobState.READY]
    assert len(done) + len(back) == 12 and len(done) >= 4  # the running ones finished
    assert all(s.counted_attempts == 0 for s in back), "a handed-back job was charged"
