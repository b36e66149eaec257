"""Acceptance: the examples in clients/python/examples run as written against a real
broker (JOBWIRE_TARGET), and the job they enqueue completes."""

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from helpers import enqueue, get
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from support import eventually

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python"


def example_env(broker: BrokerApp) -> dict[str, str]:
    return {**os.environ, "JOBWIRE_TARGET": f"127.0.0.1:{broker.port}"}


async def run_example(broker: BrokerApp, name: str) -> tuple[int, str, str]:
    """`python examples/NAME` from clients/python, as its docstring says to run it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        f"examples/{name}",
        cwd=CLIENT,
        env=example_env(broker),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def example_worker(broker: BrokerApp) -> AsyncIterator[asyncio.subprocess.Process]:
    """examples/worker.py running; killed on the way out if the test did not stop it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "examples/worker.py",
        cwd=CLIENT,
        env=example_env(broker),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, as a process manager stops it: it must exit 0 without a traceback."""
    assert proc.returncode is None, "the worker exited on its own"
    proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "Traceback" not in err.decode()


async def test_producer_and_worker_run_as_written(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    async with example_worker(broker) as worker:
        code, out, err = await run_example(broker, "producer.py")
        assert (code, err) == (0, ""), err
        lines = out.splitlines()
        assert lines[0] == "enqueued emails:1"
        events = lines[1:-1]
        assert events[0].startswith("snapshot ")
        assert any(e.startswith("progress ") and e.endswith("%") for e in events), out
        assert events[-1].split()[:2] == ["state", "completed"]
        assert lines[-1] == "result {'status': 'sent', 'to': 'ada@example.com'}"

        code, out, err = await run_example(broker, "sync_producer.py")
        assert (code, err) == (0, ""), err
        assert out == "enqueued emails:2 ready\n"

        async def sent() -> bool:
            return (await get(stub, "emails:2")).state == job_pb2.JOB_STATE_COMPLETED

        await eventually(sent)
        job = await get(stub, "emails:2")
        assert job.spec.priority == 10
        assert json.loads(job.result) == {"status": "sent", "to": "grace@example.com"}
        assert (job.attempt, job.progress.percent, job.progress.message) == (1, 100.0, "sent")

        await stop(worker)


async def test_worker_sends_a_non_address_to_dead_letters(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    async with example_worker(broker) as worker:
        job_id = await enqueue(stub, "emails", b'{"to": "nobody"}', content_type="application/json")

        async def settled() -> bool:
            state = (await get(stub, job_id)).state
            return state not in (job_pb2.JOB_STATE_READY, job_pb2.JOB_STATE_ACTIVE)

        await eventually(settled)
        job = await get(stub, job_id)
        assert job.state == job_pb2.JOB_STATE_DEAD
        assert job.attempt == 1  # not retried, though max_attempts allows more
        assert job.last_error.type == "NonRetryable"
        assert job.last_error.non_retryable
        assert job.last_error.message == "not an address: nobody"
        assert not job.result

        await stop(worker)
