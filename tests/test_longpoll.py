"""Acceptance 7: a Lease waiting on an empty queue wakes promptly when a job arrives,
also when it was enqueued through another replica."""

import asyncio
import time

import pytest
from helpers import enqueue, lease
from jobwire_broker.server import BrokerApp
from support import RedisServer, broker_settings, running_broker, stub_for

pytestmark = pytest.mark.redis_matrix

PROMPT_S = 0.100


async def test_lease_wakes_within_100ms_of_an_enqueue_on_another_replica(
    redis_server: RedisServer, prefix: str
) -> None:
    settings = broker_settings(redis_server.url, prefix)
    async with (
        running_broker(settings) as a,
        running_broker(settings) as b,
        stub_for(a.port) as on_a,
        stub_for(b.port) as on_b,
    ):
        for _ in range(3):
            waiting = asyncio.create_task(lease(on_a, wait_ms=10_000))
            await asyncio.sleep(0.3)  # the Lease is parked on A
            assert not waiting.done()
            await enqueue(on_b)
            enqueued = time.monotonic()
            assert len(await asyncio.wait_for(waiting, 5)) == 1
            woke_after = time.monotonic() - enqueued
            assert woke_after < PROMPT_S, f"woke {woke_after * 1000:.1f} ms after enqueue"


async def test_many_waiters_share_the_work(broker: BrokerApp) -> None:
    async with stub_for(broker.port) as stub:
        waiters = [asyncio.create_task(lease(stub, wait_ms=3_000)) for _ in range(10)]
        await asyncio.sleep(0.2)
        for _ in range(4):
            await enqueue(stub)
        results = await asyncio.gather(*waiters)
        assert sorted(len(r) for r in results) == [0] * 6 + [1] * 4


async def test_wait_returns_empty_at_its_end(broker: BrokerApp) -> None:
    async with stub_for(broker.port) as stub:
        start = time.monotonic()
        assert await lease(stub, wait_ms=300) == []
        assert time.monotonic() - start >= 0.29


async def test_wait_respects_the_call_deadline(broker: BrokerApp) -> None:
    from helpers import ms
    from jobwire.v1 import broker_service_pb2 as pb

    async with stub_for(broker.port) as stub:
        request = pb.LeaseRequest(queue="q", wait=ms(30_000))
        reply = await stub.Lease(request, timeout=0.5)  # returns before the deadline, no error
        assert list(reply.jobs) == []


async def test_a_long_poll_ends_well_before_the_deadline_of_a_busy_broker(
    broker: BrokerApp,
) -> None:
    """Defect 8 of issue 8: 50 ms of margin was missed on a loaded machine. The broker's
    event loop is kept busy (blocking for 100 ms at a time), and the empty reply still
    arrives before a 1 s deadline."""
    from helpers import ms
    from jobwire.v1 import broker_service_pb2 as pb

    def hog() -> None:
        time.sleep(0.1)  # blocks the broker's (this test's) event loop

    async with stub_for(broker.port) as stub:
        for _ in range(3):
            loop = asyncio.get_running_loop()
            handles = [loop.call_later(0.55 + 0.1 * i, hog) for i in range(4)]
            start = time.monotonic()
            reply = await stub.Lease(pb.LeaseRequest(queue="q", wait=ms(30_000)), timeout=1.0)
            assert list(reply.jobs) == []
            assert time.monotonic() - start < 1.0
            for h in handles:
                h.cancel()
