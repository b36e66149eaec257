"""Redis restart with AOF on, in embedded mode: the broker's own Valkey is SIGKILLed and
the broker restarts it. Nothing acknowledged is lost; the outage shows as UNAVAILABLE
and NOT_SERVING; waiting Leases and worker loops resume without restarting anything."""

import asyncio
import contextlib
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.store.keys import set_key
from redis.asyncio import Redis
from support import BrokerProcess, eventually

STOCK, WAKE, STREAM = "stock", "wakeup", "stream"
N_STOCK = 200
RESTART_DELAY_S = 4  # long enough to watch the outage from outside
DELAY_S = 10  # delayed jobs are still scheduled when checked after the restart
SERVICES = ("", "jobwire.v1.BrokerService")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


# -- the embedded broker and its Valkey ------------------------------------------------


def valkey_of(broker: BrokerProcess, timeout_s: float = 30) -> psutil.Process:
    """The broker's embedded Valkey: its child process, once one is running."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for child in psutil.Process(broker.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if "valkey" in child.name() and child.status() != psutil.STATUS_ZOMBIE:
                    return child
        time.sleep(0.05)
    raise AssertionError("the broker runs no Valkey")


def valkey_url(valkey: psutil.Process) -> str:
    (port,) = {c.laddr.port for c in valkey.net_connections("tcp") if c.status == "LISTEN"}
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def embedded(tmp_path: Path, prefix: str) -> Iterator[BrokerProcess]:
    """`jobwire serve` with no Redis URL: it runs Valkey with AOF in a data directory."""
    data = tmp_path / "data"
    broker = BrokerProcess(
        "--redis-url", "", "--data-dir", str(data), "--key-prefix", prefix,
        "--embedded-restart-delay", str(RESTART_DELAY_S), "--grace", "0.5",
    )  # fmt: skip
    try:
        yield broker
    finally:
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(broker.process.pid).children()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.terminate(timeout_s=15)
        broker.kill()
        print(f"--- broker output:\n{''.join(broker.output[-60:])}")  # shown on failure
        with contextlib.suppress(OSError):
            print(f"--- valkey.log:\n{(data / 'valkey.log').read_text()[-3000:]}")
        # The broker stops its Valkey; make sure, without touching anything else.
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()


# -- calls -----------------------------------------------------------------------------


async def health_is(health: health_pb2_grpc.HealthStub, status: int) -> bool:
    for service in SERVICES:
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        if response.status != status:
            return False
    return True


def details(err: grpc.aio.AioRpcError) -> tuple[str, bool]:
    """ErrorInfo.reason of a failed call, and whether it carries RetryInfo."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status: {err}"
    reason, retry = "", False
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        retry = retry or detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return reason, retry


async def enqueue(stub: rpc.BrokerServiceStub, queue: str, n: int = 1) -> list[str]:
    specs = [job_pb2.JobSpec(payload=f"{queue} {i}".encode()) for i in range(n)]
    response = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=specs))
    return [r.job_id for r in response.results]


async def get_jobs(stub: rpc.BrokerServiceStub, ids: list[str]) -> dict[str, job_pb2.Job]:
    responses = await asyncio.gather(
        *(stub.GetJob(pb.GetJobRequest(job_id=i), timeout=10) for i in ids)
    )
    return {i: r.job for i, r in zip(ids, responses, strict=True)}


async def complete(stub: rpc.BrokerServiceStub, jobs: list[pb.LeasedJob]) -> None:
    await asyncio.gather(
        *(
            stub.Complete(
                pb.CompleteRequest(
                    job_id=j.job.id, lease_token=j.lease_token, result=j.job.spec.payload
                ),
                timeout=10,
            )
            for j in jobs
        )
    )


class Consumer:
    """A worker loop on the raw stubs that keeps leasing through an outage: UNAVAILABLE
    is waited out and retried, anything else fails the loop."""

    def __init__(self, stub: rpc.BrokerServiceStub, queue: str) -> None:
        self.stub = stub
        self.queue = queue
        self.completed: list[str] = []
        self.unavailable = 0
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        request = pb.LeaseRequest(queue=self.queue, max_jobs=10, wait=Duration(seconds=1))
        while not self.stopping.is_set():
            try:
                response = await self.stub.Lease(request, timeout=10)
            except grpc.aio.AioRpcError as err:
                await self._back_off(err)
                continue
            for leased in response.jobs:
                await self._complete(leased)

    async def _complete(self, leased: pb.LeasedJob) -> None:
        request = pb.CompleteRequest(job_id=leased.job.id, lease_token=leased.lease_token)
        while True:
            try:
                await self.stub.Complete(request, timeout=10)
            except grpc.aio.AioRpcError as err:
                await self._back_off(err)
                continue
            self.completed.append(leased.job.id)
            return

    async def _back_off(self, err: grpc.aio.AioRpcError) -> None:
        if err.code() != grpc.StatusCode.UNAVAILABLE:
            raise err
        self.unavailable += 1
        await asyncio.sleep(0.1)


# -- the test --------------------------------------------------------------------------


def stock_specs() -> list[job_pb2.JobSpec]:
    """Mixed priorities, every fifth job delayed; long leases that outlive the outage."""
    return [
        job_pb2.JobSpec(
            payload=f"stock {i}".encode(),
            priority=(0, 5, -5, 10)[i % 4],
            delay=Duration(seconds=DELAY_S) if i % 5 == 0 else None,
            lease_duration=Duration(seconds=60),
        )
        for i in range(N_STOCK)
    ]


def same_job(before: job_pb2.Job, after: job_pb2.Job, now_ms: int) -> bool:
    """Equal, except that a delayed job may have become ready once due."""
    if before.state == job_pb2.JOB_STATE_SCHEDULED and before.run_time.ToMilliseconds() <= (
        now_ms + 1000
    ):
        if after.state not in (job_pb2.JOB_STATE_SCHEDULED, job_pb2.JOB_STATE_READY):
            return False
        promoted = job_pb2.Job()
        promoted.CopyFrom(after)
        promoted.state = before.state
        after = promoted
    return before == after


async def test_embedded_valkey_restart(embedded: BrokerProcess, prefix: str) -> None:
    async with grpc.aio.insecure_channel(embedded.target) as channel:
        stub = rpc.BrokerServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await eventually(lambda: health_is(health, SERVING))

        # Before: 200 jobs, some completed, some held by a worker, some delayed.
        response = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=STOCK, jobs=stock_specs()))
        ids = [r.job_id for r in response.results]
        done = (await stub.Lease(pb.LeaseRequest(queue=STOCK, max_jobs=10))).jobs
        await complete(stub, list(done))
        held = (await stub.Lease(pb.LeaseRequest(queue=STOCK, max_jobs=5))).jobs
        before = await get_jobs(stub, ids)
        assert Counter(j.state for j in before.values()) == {
            job_pb2.JOB_STATE_COMPLETED: 10,
            job_pb2.JOB_STATE_ACTIVE: 5,
            job_pb2.JOB_STATE_SCHEDULED: N_STOCK // 5,
            job_pb2.JOB_STATE_READY: N_STOCK - N_STOCK // 5 - 15,
        }
        # Then a worker loop and a Lease parked on an empty queue, both through the outage.

        consumer = Consumer(stub, STREAM)
        consuming = asyncio.create_task(consumer.run())
        streamed = await enqueue(stub, STREAM, 20)
        await eventually(lambda: _true(set(streamed) <= set(consumer.completed)))
        # A call starts at once; awaiting it later only collects the answer.
        parked = stub.Lease(pb.LeaseRequest(queue=WAKE, wait=Duration(seconds=30)), timeout=45)
        old = valkey_of(embedded)
        async with Redis.from_url(valkey_url(old)) as direct:
            waiting = set_key(prefix, WAKE, "waiting")  # set while a Lease long-polls
            await eventually(lambda: _exists(direct, waiting))

        old.send_signal(signal.SIGKILL)

        # During the outage.
        await eventually(lambda: health_is(health, NOT_SERVING), timeout_s=RESTART_DELAY_S)
        with pytest.raises(grpc.aio.AioRpcError) as enqueue_error:
            await stub.Enqueue(pb.EnqueueRequest(queue=STOCK, job=job_pb2.JobSpec()), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as get_error:
            await stub.GetJob(pb.GetJobRequest(job_id=ids[0]), timeout=10)
        for err in (enqueue_error.value, get_error.value):
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            assert details(err) == ("STORE_UNAVAILABLE", True)
        await eventually(lambda: _true(consumer.unavailable > 0), timeout_s=RESTART_DELAY_S)
        assert not parked.done()

        # After: the broker restarted Valkey by itself; nothing else was restarted.
        await eventually(lambda: health_is(health, SERVING), timeout_s=30)
        assert valkey_of(embedded).pid != old.pid and embedded.process.poll() is None

        # The Lease parked before the outage gets a job enqueued after it.
        (woken,) = await enqueue(stub, WAKE)
        got = await asyncio.wait_for(parked, 10)
        assert [j.job.id for j in got.jobs] == [woken]
        # The worker loop that lived through the outage consumes again.
        streamed_after = await enqueue(stub, STREAM, 20)
        await eventually(lambda: _true(set(streamed_after) <= set(consumer.completed)))
        consumer.stopping.set()
        await asyncio.wait_for(consuming, 10)
        assert sorted(consumer.completed) == sorted(streamed + streamed_after)

        # Every job is there as it was; the failed Enqueue wrote nothing.
        after = await get_jobs(stub, ids)
        now_ms = int(time.time() * 1000)
        assert [i for i in ids if not same_job(before[i], after[i], now_ms)] == []
        (late,) = await enqueue(stub, STOCK)
        assert late == f"{STOCK}:{N_STOCK + 1}"

        # And every one can still be finished: held leases with their old tokens, the
        # ready jobs in priority order, the delayed ones once due.
        await complete(stub, list(held))
        await finish_the_rest(stub, [*ids, late], before)
        final = await get_jobs(stub, [*ids, late])
        assert {i for i, j in final.items() if j.state != job_pb2.JOB_STATE_COMPLETED} == set()
        assert all(j.result == j.spec.payload for j in final.values())


async def finish_the_rest(
    stub: rpc.BrokerServiceStub, ids: list[str], before: dict[str, job_pb2.Job]
) -> None:
    def order(job: pb.LeasedJob) -> tuple[int, int]:
        return -job.job.spec.priority, int(job.job.id.rsplit(":", 1)[1])

    ready = (await stub.Lease(pb.LeaseRequest(queue=STOCK, max_jobs=1000))).jobs
    assert list(ready) == sorted(ready, key=order)
    was_ready = {i for i, j in before.items() if j.state == job_pb2.JOB_STATE_READY}
    assert was_ready <= {j.job.id for j in ready}
    await complete(stub, list(ready))

    jobs = await get_jobs(stub, ids)
    remaining = {i for i, j in jobs.items() if j.state != job_pb2.JOB_STATE_COMPLETED}
    end = time.monotonic() + DELAY_S + 20
    while remaining:
        assert time.monotonic() < end, f"never leased: {sorted(remaining)}"
        request = pb.LeaseRequest(queue=STOCK, max_jobs=1000, wait=Duration(seconds=5))
        leased = (await stub.Lease(request, timeout=10)).jobs
        await complete(stub, list(leased))
        remaining -= {j.job.id for j in leased}


async def _true(value: bool) -> bool:
    return value


async def _exists(client: Redis, key: str) -> bool:
    return bool(await client.exists(key))
