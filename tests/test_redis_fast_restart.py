"""Redis killed and back within a fraction of a second: every pooled connection now
points at a dead server. The broker must replace them before they fail a call, while
its health probe may never have seen the outage."""

import asyncio
import time

import grpc
import pytest
from helpers import enqueue, get, lease
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import job_pb2
from jobwire_broker.domain.model import NewJob
from jobwire_broker.server import BrokerApp
from jobwire_broker.store import Store
from jobwire_broker.store.connection import redis_client
from support import RedisServer, broker_settings, running_broker, stub_for, unique_prefix

pytestmark = pytest.mark.redis_matrix

ROUNDS = 3


def restart_fast(server: RedisServer) -> RedisServer:
    """SIGKILLs the server and starts a new one on the same port and dir (AOF), at once."""
    server.kill()
    again = RedisServer(aof=True, port=server.port)
    again.dir = server.dir
    return again.start()


async def busy_pool(stub: object, n: int = 40) -> None:
    """Many concurrent calls, so the pool holds many connections."""
    await asyncio.gather(*(get(stub, "q:1") for _ in range(n)))  # type: ignore[arg-type]


async def test_calls_right_after_a_fast_redis_restart_succeed() -> None:
    server = RedisServer(aof=True).start()
    # A long health interval: the probe must not be what saves the calls.
    settings = broker_settings(server.url, unique_prefix(), health_interval_s=30)
    try:
        async with running_broker(settings) as app, stub_for(app.port) as stub:
            await enqueue(stub)
            for _ in range(ROUNDS):
                await busy_pool(stub)
                server = restart_fast(server)
                started = time.monotonic()
                # Every kind of call, each on a pooled connection to the old server:
                # reads, a script, a batch of them at once.
                await busy_pool(stub)
                job_id = await enqueue(stub)
                (held,) = await lease(stub, n=1)
                await stub.Complete(
                    pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token)
                )
                assert (await get(stub, job_id)).state == job_pb2.JOB_STATE_READY
                assert time.monotonic() - started < 5
            await assert_serving(app)
    finally:
        server.stop()


async def assert_serving(app: BrokerApp) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_stale_connection_is_replaced_before_the_loop_has_seen_its_eof() -> None:
    """The first call after the restart runs before the event loop has polled the old
    socket: the check at checkout must ask the kernel, not the loop's buffers."""
    server = RedisServer(aof=True).start()
    client = redis_client(server.url, max_connections=4, timeout_s=5)
    store = Store(client, unique_prefix())
    try:
        await store.enqueue("q", [NewJob(b"x")])
        for _ in range(ROUNDS):
            assert await store.get("q", 1) is not None
            server = restart_fast(server)  # blocks the loop: nothing polls the old socket
            assert await store.get("q", 1) is not None
            await store.enqueue("q", [NewJob(b"y")])
    finally:
        await client.aclose()
        await client.connection_pool.disconnect()
        server.stop()
