"""Calls that touch many jobs run as several script calls of at most JOBS_PER_CALL jobs
(store/batches.py), so none blocks Redis for long, and give the same answers as one call
would: a Lease of 1000 gets 1000 jobs in priority/FIFO order within its byte budget,
the settlement batches answer every item, and the maintenance loop clears a backlog
bigger than one call. Against a real server."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from jobwire_broker.domain.maintenance import ROUNDS, Maintenance, MaintenanceSettings
from jobwire_broker.domain.model import (
    CompleteItem,
    HeartbeatItem,
    LeaseBatch,
    NewJob,
    Outcome,
    Retention,
)
from jobwire_broker.store import Store
from jobwire_broker.store.batches import JOBS_PER_CALL
from redis.asyncio import Redis

pytestmark = pytest.mark.redis_matrix
Q = "batches"


def jobs(n: int, priority: int = 0, size: int = 10) -> list[NewJob]:
    return [NewJob(b"x" * size, "", {}, priority=priority) for _ in range(n)]


async def fill(store: Store, n: int, **options: int) -> list[int]:
    seqs: list[int] = []
    for start in range(0, n, 1000):
        done = await store.enqueue(Q, jobs(min(1000, n - start), **options))
        seqs.extend(e.seq for e in done)
    return seqs


async def lease_calls(redis: Redis, prefix: str, run: Callable[[], Awaitable[Any]]) -> int:
    """How many script calls on this test's queue `run` made: SLOWLOG with every command
    logged, filtered by the queue's keys (other tests' brokers may share the server)."""
    old = await redis.config_get("slowlog-*")
    # Valkey logs the commands a script runs too: keep them all.
    await redis.config_set("slowlog-max-len", 1_000_000)
    await redis.config_set("slowlog-log-slower-than", 0)
    await redis.execute_command("SLOWLOG", "RESET")
    try:
        await run()
        rows = await redis.slowlog_get(1_000_000)
    finally:
        for name in ("slowlog-log-slower-than", "slowlog-max-len"):
            await redis.config_set(name, old[name])
    mine = f"{prefix}:{{{Q}}}:".encode()
    return sum(1 for r in rows if r["command"].startswith(b"EVALSHA") and mine in r["command"])


async def test_a_lease_bigger_than_one_call_gets_every_job_in_order(
    store: Store, redis: Redis, prefix: str
) -> None:
    low = await fill(store, 600)
    high = await fill(store, 250, priority=5)
    await store.lease("elsewhere", 1)  # loads the script: a NOSCRIPT retry counts too
    leased: list[LeaseBatch] = []

    async def lease() -> None:
        leased.append(await store.lease(Q, 1000, worker_id="w"))

    # Full calls, then one that leases the rest (or, when none is left, nothing).
    assert await lease_calls(redis, prefix, lease) == 850 // JOBS_PER_CALL + 1
    (batch,) = leased
    got = [j.seq for j in batch.jobs]
    assert got == (high + low)[:1000] and len(got) == 850
    tokens = {j.token for j in batch.jobs}
    assert len(tokens) == 850  # every job its own token, across calls
    assert (await store.lease(Q, 10)).jobs == []


async def test_a_lease_over_several_calls_keeps_its_byte_budget(store: Store) -> None:
    await fill(store, 3 * JOBS_PER_CALL, size=10_000)
    # lease.lua estimates a job at 2 KiB of fixed fields plus its payload.
    per_job = 2048 + 10_000
    budget = int(per_job * (JOBS_PER_CALL + 20.5))
    batch = await store.lease(Q, 1000, max_bytes=budget)
    assert len(batch.jobs) == JOBS_PER_CALL + 20 and batch.too_large is None


async def test_settlement_batches_answer_every_item_across_calls(store: Store) -> None:
    await fill(store, 2 * JOBS_PER_CALL + 7)
    leased = (await store.lease(Q, 1000)).jobs
    items = [HeartbeatItem(j.seq, j.token, 30_000) for j in leased]
    beats = await store.heartbeat(Q, items)
    assert [b.outcome for b in beats] == [Outcome.OK] * len(leased)
    done = [CompleteItem(i.seq, i.token, b"", "") for i in items]
    done.insert(JOBS_PER_CALL + 3, CompleteItem(999_999, "nope", b"", ""))
    results = await store.complete(Q, done)
    outcomes = [r.outcome for r in results]
    assert len(outcomes) == len(done)
    assert outcomes[JOBS_PER_CALL + 3] is Outcome.NOT_FOUND
    assert outcomes.count(Outcome.OK) == len(leased)


async def test_maintenance_promotes_a_backlog_bigger_than_one_call_in_one_tick(
    redis: Redis, prefix: str
) -> None:
    store = Store(redis, prefix)
    n = 3 * JOBS_PER_CALL + 1
    await store.enqueue(Q, [NewJob(b"", "", {}, delay_ms=100) for _ in range(n)])
    await asyncio.sleep(0.2)
    loop = Maintenance(store, MaintenanceSettings(retention=Retention()))
    await loop.tick()
    assert await redis.zcard(f"{prefix}:{{{Q}}}:ready") == n
    assert n <= ROUNDS * JOBS_PER_CALL
