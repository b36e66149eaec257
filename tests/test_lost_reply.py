"""A Complete whose reply is lost on the way back (issue 14, acceptance 3), made with a real
fault proxy: Shopify's toxiproxy between the worker and the broker drops everything the
broker sends once the request is on its way, so the broker completes the job but the
worker never hears it. The worker's retry, with the same token, is answered OK, and the
job was completed exactly once."""

import asyncio
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from helpers import enqueue, get, lease
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import ROOT

SERVER = ROOT / ".tools/toxiproxy/server"
pytestmark = pytest.mark.cross_language  # a Go program (`make tools`)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Toxiproxy:
    api: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as reply:
            text = reply.read()
        try:
            return json.loads(text)
        except ValueError:  # /version answers plain text, DELETE nothing
            return text.decode()


@pytest.fixture
def toxiproxy() -> Iterator[Toxiproxy]:
    if not SERVER.exists():
        pytest.skip("no toxiproxy (make tools)")
    port = free_port()
    process = subprocess.Popen(
        [str(SERVER), "-host", "127.0.0.1", "-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = Toxiproxy(f"http://127.0.0.1:{port}")
    try:
        end = time.monotonic() + 10
        while True:
            try:
                proxy.call("GET", "/version")
                break
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        yield proxy
    finally:
        process.terminate()
        process.wait(5)


@pytest.fixture
async def through_proxy(
    toxiproxy: Toxiproxy, broker: BrokerApp
) -> AsyncIterator[tuple[rpc.BrokerServiceStub, Toxiproxy]]:
    listen = free_port()
    body = {
        "name": "broker",
        "listen": f"127.0.0.1:{listen}",
        "upstream": f"127.0.0.1:{broker.port}",
    }
    await asyncio.to_thread(toxiproxy.call, "POST", "/proxies", body)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{listen}") as channel:
        yield rpc.BrokerServiceStub(channel), toxiproxy


async def completed_events(redis: Redis, prefix: str) -> int:
    entries = await redis.xrange(f"{prefix}:{{q}}:qevents")
    return sum(1 for _, fields in entries if fields.get(b"kind") == b"completed")


async def test_a_complete_whose_reply_was_cut_is_retried_and_answered_ok(
    stub: rpc.BrokerServiceStub,
    through_proxy: tuple[rpc.BrokerServiceStub, Toxiproxy],
    redis: Redis,
    prefix: str,
) -> None:
    worker, proxy = through_proxy
    job_id = await enqueue(stub)
    (leased,) = await lease(worker)
    # From here on the broker's replies are dropped: the request gets through, the
    # answer does not.
    cut = {
        "name": "cut",
        "type": "timeout",
        "stream": "downstream",
        "toxicity": 1.0,
        "attributes": {"timeout": 0},
    }
    await asyncio.to_thread(proxy.call, "POST", "/proxies/broker/toxics", cut)
    request = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token, result=b"once")
    with pytest.raises(grpc.aio.AioRpcError) as lost:
        await worker.Complete(request, timeout=1.0)
    assert lost.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    done = await get(stub, job_id)
    assert done.state == job_pb2.JOB_STATE_COMPLETED, "the broker did complete it"

    # The link comes back (a new connection); the worker retries the same Complete.
    await asyncio.to_thread(proxy.call, "DELETE", "/proxies/broker/toxics/cut")
    await asyncio.to_thread(proxy.call, "POST", "/proxies/broker", {"enabled": False})
    await asyncio.to_thread(proxy.call, "POST", "/proxies/broker", {"enabled": True})
    retry = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token, result=b"twice")
    await worker.Complete(retry, timeout=5.0, wait_for_ready=True)  # OK, not LEASE_LOST

    job = await get(stub, job_id)
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert (job.result, job.attempt) == (b"once", 1)
    assert job.finish_time == done.finish_time
    assert await completed_events(redis, prefix) == 1, "completed exactly once"
