"""The Python worker through outages, as a deployment meets them: the broker restarted,
Redis down for 10 s, calls failing with codes other than UNAVAILABLE. The worker keeps
leasing, its heartbeats and settlements ride the outage out, every job runs exactly
once, and Worker.health says what is failing meanwhile."""

import asyncio
import contextlib
import logging
import shutil
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from jobwire import (
    ChannelOptions,
    Client,
    Job,
    JobState,
    Unavailable,
    Worker,
    WorkerHealth,
    job_spec,
)
from jobwire_broker.embedded import free_port
from jobwire_broker.server import BrokerApp
from support import BrokerProcess, RedisServer, eventually

QUEUE = "steady"
BROKER_DOWN_S = 5.0
REDIS_DOWN_S = 10.0
RESUME_S = 10.0  # from the end of an outage to the worker processing jobs again
LONG_LEASE_S = 20.0  # the job that runs across the Redis outage: longer than the outage
LONG_AFTER_S = 12.0  # ... and it runs this long after it, past the lease's first expiry


class Deployment:
    """Redis with AOF and a broker process on fixed ports, each restartable in place."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.redis = RedisServer(aof=True).start()
        self.port = free_port()
        self.broker = self._broker()

    def _broker(self) -> BrokerProcess:
        return BrokerProcess(
            "--redis-url", self.redis.url, "--key-prefix", self.prefix,
            "--listen", f"127.0.0.1:{self.port}", "--grace", "0.5",
        )  # fmt: skip

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def restart_broker(self) -> None:
        self.broker.kill()
        self.broker = self._broker()

    def restart_redis(self) -> None:
        """A new server on the same port, reading the killed one's AOF."""
        again = RedisServer(aof=True, port=self.redis.port)
        shutil.rmtree(again.dir)
        again.dir = self.redis.dir
        self.redis = again.start()

    def close(self) -> None:
        self.broker.kill()
        self.redis.stop()


@pytest.fixture
def deployment(prefix: str) -> Iterator[Deployment]:
    made = Deployment(prefix)
    try:
        yield made
    finally:
        print(f"--- broker output:\n{''.join(made.broker.output[-40:])}")  # shown on failure
        made.close()


class Ledger:
    """The handler, and what it saw: how often each job ran. A job's payload says what
    it does: "quick" returns at once, "during" returns once the outage has begun (its
    settlement meets the outage), "across" runs until well after the outage."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()
        self.outage = asyncio.Event()
        self.recovered = asyncio.Event()

    async def handle(self, job: Job) -> dict[str, Any]:
        self.runs[job.id] += 1
        kind = job.json()["kind"]
        if kind == "during":
            await self.outage.wait()
        elif kind == "across":
            await self.recovered.wait()
            await asyncio.sleep(LONG_AFTER_S)
        return {"id": job.id}

    def started(self, ids: list[str]) -> bool:
        return all(self.runs[i] for i in ids)


async def enqueue(target: str, key: str, kinds: list[str], **options: Any) -> list[str]:
    """Enqueues through a fresh channel, retrying until the broker and its store answer;
    idempotency keys make the retries safe."""
    specs = [
        job_spec({"kind": kind}, idempotency_key=f"{key}-{i}", **options)
        for i, kind in enumerate(kinds)
    ]
    end = time.monotonic() + 20
    while True:
        async with Client(target) as client:
            try:
                return [r.job_id for r in await client.enqueue_batch(QUEUE, specs)]
            except Unavailable:
                if time.monotonic() > end:
                    raise
        await asyncio.sleep(0.2)


async def states(target: str, ids: list[str]) -> dict[str, tuple[JobState, int]]:
    async with Client(target) as client:
        infos = await asyncio.gather(*(client.get(i) for i in ids))
    return {i.id: (i.state, i.attempt) for i in infos}


async def all_completed(target: str, ids: list[str]) -> bool:
    return all(s == JobState.COMPLETED for s, _ in (await states(target, ids)).values())


async def _true(value: bool) -> bool:
    return value


async def unhealthy(worker: Worker) -> bool:
    return not worker.health.healthy


async def healthy(worker: Worker) -> bool:
    return worker.health.healthy


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    try:
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_one_worker_rides_out_a_broker_restart_then_a_redis_outage(
    deployment: Deployment,
) -> None:
    ledger = Ledger()
    worker = Worker(deployment.target, concurrency=4, lease_wait=1)
    worker.register(QUEUE, ledger.handle)
    target = deployment.target
    ids: list[str] = []

    async with running(worker) as task:
        first = await enqueue(target, "first", ["quick"] * 20)
        await eventually(lambda: all_completed(target, first), 20)
        assert worker.health.healthy and worker.health.failing == {}
        ids += first

        # The broker is SIGKILLed with two jobs running, and restarted 5 s later.
        during = await enqueue(target, "broker-during", ["during"] * 2)
        await eventually(lambda: _true(ledger.started(during)), 10)
        killed = time.monotonic()
        deployment.broker.kill()
        ledger.outage.set()  # their handlers return: the settlements meet the outage
        await eventually(lambda: _true(f"lease {QUEUE}" in worker.health.failing), 3)
        down = worker.health
        assert down.last_error is not None and "UNAVAILABLE" in down.last_error
        assert not down.healthy
        assert down.failing.keys() <= {f"lease {QUEUE}", "settle", "heartbeat"}
        await asyncio.sleep(BROKER_DOWN_S - (time.monotonic() - killed))
        deployment.restart_broker()
        back = time.monotonic()

        after_broker = await enqueue(target, "broker-after", ["quick"] * 20)
        await eventually(lambda: _true(ledger.started(after_broker)), RESUME_S)
        print(f"processing again {time.monotonic() - back:.1f}s after the broker restart")
        await eventually(lambda: all_completed(target, [*during, *after_broker]), 10)
        await eventually(lambda: healthy(worker), RESUME_S)
        assert worker.health.since > down.since
        ids += during + after_broker

        # Redis is SIGKILLed with jobs running, and a new one (same port, same AOF)
        # starts 10 s later. The "across" job's lease outlives the outage only if
        # heartbeats resume after it.
        ledger.outage.clear()
        during = await enqueue(target, "redis-during", ["during"] * 2)
        across = await enqueue(target, "redis-across", ["across"], lease_duration=LONG_LEASE_S)
        await eventually(lambda: _true(ledger.started([*during, *across])), 10)
        killed = time.monotonic()
        deployment.redis.kill()
        ledger.outage.set()
        await eventually(lambda: unhealthy(worker), REDIS_DOWN_S - 2)
        down = worker.health
        assert down.last_error is not None and "UNAVAILABLE" in down.last_error
        await asyncio.sleep(REDIS_DOWN_S - (time.monotonic() - killed))
        assert not worker.health.healthy  # still down: nothing could have succeeded
        deployment.restart_redis()
        back = time.monotonic()
        ledger.recovered.set()

        after_redis = await enqueue(target, "redis-after", ["quick"] * 20)
        await eventually(lambda: _true(ledger.started(after_redis)), RESUME_S)
        print(f"processing again {time.monotonic() - back:.1f}s after Redis came back")
        await eventually(lambda: all_completed(target, [*during, *after_redis]), 10)
        await eventually(lambda: healthy(worker), RESUME_S)
        await eventually(lambda: all_completed(target, across), LONG_AFTER_S + 10)
        ids += during + across + after_redis
        assert not task.done()

    # The accounting: every job ran exactly once and completed on its first attempt.
    assert len(ids) == len(set(ids)) == 20 + 2 + 20 + 2 + 1 + 20
    assert {i: n for i, n in ledger.runs.items() if n != 1} == {}
    assert set(ledger.runs) == set(ids)
    final = await states(target, ids)
    assert {i: s for i, s in final.items() if s != (JobState.COMPLETED, 1)} == {}
    async with Client(target) as client:
        assert [(await client.get(i)).result_json() for i in ids[::5]] == [
            {"id": i} for i in ids[::5]
        ]


async def test_lease_error_other_than_unavailable_is_retried(broker: BrokerApp) -> None:
    """RESOURCE_EXHAUSTED from a Lease reply over the worker's receive limit: the big job
    is never delivered (its lease runs out and it goes dead); the worker keeps leasing
    and takes the jobs behind it."""
    target = f"127.0.0.1:{broker.port}"
    ledger = Ledger()
    options = ChannelOptions(max_message_bytes=64 * 1024)
    worker = Worker(target, concurrency=2, lease_wait=1, options=options)
    worker.register(QUEUE, ledger.handle)
    async with Client(target) as client:
        big = await client.enqueue(
            QUEUE, {"kind": "quick", "pad": "x" * 100_000}, max_attempts=1, lease_duration=1
        )
        async with running(worker):
            await eventually(lambda: unhealthy(worker), 5)
            error = worker.health.failing[f"lease {QUEUE}"]
            assert "RESOURCE_EXHAUSTED" in error, error
            small = await enqueue(target, "small", ["quick"] * 5, max_attempts=3)
            await eventually(lambda: all_completed(target, small), 15)
            await eventually(lambda: healthy(worker), 5)

            async def dead() -> bool:
                return (await client.get(big.job_id)).state == JobState.DEAD

            await eventually(dead, 10)  # its lease ran out with no attempts left
    assert ledger.runs == Counter(small)


async def test_a_bad_queue_shows_in_health_and_the_others_keep_working(
    broker: BrokerApp, caplog: pytest.LogCaptureFixture
) -> None:
    """INVALID_ARGUMENT will not fix itself: it is logged once, as an error, retried
    slowly, and named in the health; the worker's other queues are unaffected."""
    target = f"127.0.0.1:{broker.port}"
    ledger = Ledger()
    worker = Worker(target, concurrency=2, lease_wait=1)
    worker.register(QUEUE, ledger.handle)
    worker.register("no spaces allowed", ledger.handle)
    caplog.set_level(logging.INFO, "jobwire.worker")
    async with running(worker):
        await eventually(lambda: unhealthy(worker), 5)
        jobs = await enqueue(target, "good", ["quick"] * 5)
        await eventually(lambda: all_completed(target, jobs), 10)
        health = worker.health
    assert isinstance(health, WorkerHealth)
    assert list(health.failing) == ["lease no spaces allowed"]
    assert "INVALID_ARGUMENT" in health.failing["lease no spaces allowed"]
    assert (
        health.last_error == f"lease no spaces allowed: {health.failing['lease no spaces allowed']}"
    )
    bad = [r for r in caplog.records if "no spaces allowed" in r.getMessage()]
    assert [r.levelno for r in bad] == [logging.ERROR], [r.getMessage() for r in bad]


async def test_a_settlement_the_broker_refuses_does_not_strand_the_job(
    broker: BrokerApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A result over the broker's payload limit makes the whole SettleBatch invalid: the
    job is failed instead (with the broker's reason), and its batch-mates complete."""
    target = f"127.0.0.1:{broker.port}"
    worker = Worker(target, concurrency=4, lease_wait=1)
    started: set[str] = set()
    all_started = asyncio.Event()

    @worker.handler("results")
    async def handle(job: Job) -> bytes:
        started.add(job.id)
        if len(started) == 4:
            all_started.set()
        await all_started.wait()  # all four return at once: one SettleBatch
        return b"x" * (2 << 20) if job.json()["kind"] == "huge" else b"fine"

    caplog.set_level(logging.DEBUG, "jobwire.worker")
    async with Client(target) as client:
        huge = await client.enqueue("results", {"kind": "huge"}, max_attempts=1)
        fine = [(await client.enqueue("results", {"kind": "fine"})).job_id for _ in range(3)]

        async def settled() -> bool:
            infos = [await client.get(i) for i in [huge.job_id, *fine]]
            return all(i.state.terminal for i in infos)

        async with running(worker):
            await eventually(settled, 15)
            assert worker.health.healthy, worker.health
        info = await client.get(huge.job_id)
        assert info.state == JobState.DEAD and info.last_error is not None
        assert info.last_error.type == "SettlementRejected", info.last_error
        assert "result" in info.last_error.message
        assert [(await client.get(i)).result for i in fine] == [b"fine"] * 3
    assert any("4 settlements refused" in r.getMessage() for r in caplog.records)


class ReplyHolder:
    """A TCP proxy in front of the broker that can hold back the broker's replies while
    the calls still reach it: what a client sees when replies are lost on the way."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.replies = asyncio.Event()
        self.replies.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [writer, up_writer]
        for pump in (self._pump(reader, up_writer, False), self._pump(up_reader, writer, True)):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, replies: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if replies:
                    await self.replies.wait()  # held: later bytes wait behind, in order
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await self._server.wait_closed()


async def test_a_settlement_retried_after_it_landed_counts_as_done(
    broker: BrokerApp, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker completes the job but its reply is lost: the worker's call times out
    and is retried, and the retry, with the same token, gets the first outcome again
    (OK, not LEASE_LOST): the worker counts the job done, without a warning."""
    holder = ReplyHolder(broker.port)
    target = await holder.start()
    release = asyncio.Event()
    runs: Counter[str] = Counter()
    worker = Worker(target, concurrency=1, lease_wait=1, options=ChannelOptions(timeout_s=1))

    @worker.handler("lossy")
    async def handle(job: Job) -> str:
        runs[job.id] += 1
        await release.wait()
        return "done"

    caplog.set_level(logging.DEBUG, "jobwire.worker")
    try:
        async with running(worker), Client(f"127.0.0.1:{broker.port}") as client:
            job = await client.enqueue("lossy", b"")
            await eventually(lambda: _true(runs[job.job_id] == 1), 10)
            holder.replies.clear()
            release.set()

            async def completed() -> bool:
                return (await client.get(job.job_id)).state == JobState.COMPLETED

            await eventually(completed, 5)  # the first call landed; its reply is held
            await eventually(lambda: _true("settle" in worker.health.failing), 5)
            await asyncio.sleep(1.2)  # a retry reached the broker too
            holder.replies.set()
            await eventually(lambda: healthy(worker), 10)
            info = await client.get(job.job_id)
            assert (info.state, info.result, info.attempt) == (JobState.COMPLETED, b"done", 1)
    finally:
        await holder.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "refused" in m or "LEASE_LOST" in m] == [], messages
    assert runs == {job.job_id: 1}
