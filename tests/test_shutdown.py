"""Stopping cleanly: a cancelled Lease hands back what it leased, and a broker replica
always finishes stopping."""

import asyncio

from jobwire_broker.domain.broker import Broker
from jobwire_broker.domain.model import JobState, LeaseBatch, NewJob
from jobwire_broker.store import Store
from jobwire_broker.store.notify import Notifier
from redis.asyncio import Redis
from support import RedisServer, broker_settings, running_broker, unique_prefix


class SlowReplyStore(Store):
    """A real store whose lease replies arrive late, as over a slow network: the script
    has run (jobs are leased) while the caller is still waiting."""

    async def lease(
        self, queue: str, max_jobs: int, waiting_flag_ms: int, max_bytes: int
    ) -> LeaseBatch:
        batch = await super().lease(queue, max_jobs, waiting_flag_ms, max_bytes)
        await asyncio.sleep(0.3)
        return batch


async def test_a_lease_cancelled_after_its_script_ran_hands_the_jobs_back(
    redis: Redis, prefix: str
) -> None:
    store = SlowReplyStore(redis, prefix)
    broker = Broker(store, Notifier(redis))
    await store.enqueue("q", [NewJob(b"a"), NewJob(b"b")])
    call = asyncio.create_task(broker.lease("q", 10, 0))
    await asyncio.sleep(0.1)  # the script has run; the reply is on its way
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    for seq in (1, 2):
        job = await store.get("q", seq)
        assert job is not None
        assert (job.state, job.counted_attempts) == (JobState.READY, 0)  # back, not charged


async def test_a_replica_always_finishes_stopping(redis_server: RedisServer) -> None:
    for _ in range(15):
        settings = broker_settings(redis_server.url, unique_prefix())
        async with asyncio.timeout(10):  # a stop that hangs fails here
            async with running_broker(settings):
                await asyncio.sleep(0.05)
