"""Each Lua script on its own, against a real server, checking the raw keys after it runs.
The clock is simulated (the scripts' `now` override), so backoff and expiry need no sleep."""

import re
from pathlib import Path

import pytest
from jobwire_broker.domain.model import (
    Backoff,
    BackoffKind,
    CompleteItem,
    FailItem,
    HeartbeatItem,
    JobError,
    JobState,
    NewJob,
    Outcome,
    Progress,
    ReleaseItem,
    Retention,
    TraceContext,
)
from jobwire_broker.store import Store
from jobwire_broker.store.scripts import SCRIPT_NAMES, Code
from redis.asyncio import Redis

pytestmark = pytest.mark.redis_matrix

LUA = Path(__file__).resolve().parent.parent / "broker/jobwire_broker/store/lua"
T0 = 1_800_000_000_000
Q = "q"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def s(redis: Redis, prefix: str, clock: Clock) -> Store:
    return Store(redis, prefix, clock=clock)


async def zset(redis: Redis, prefix: str, name: str) -> dict[str, float]:
    rows = await redis.zrange(f"{prefix}:{{{Q}}}:{name}", 0, -1, withscores=True)
    return {m.decode(): score for m, score in rows}


async def field(redis: Redis, prefix: str, seq: int, name: str) -> str | None:
    value = await redis.hget(f"{prefix}:{{{Q}}}:job:{seq}", name)
    return None if value is None else value.decode()


async def lease_one(s: Store) -> tuple[int, str]:
    (job,) = (await s.lease(Q, 1)).jobs
    return job.seq, job.token


# -- codes ---------------------------------------------------------------------------


def test_lib_defines_the_python_codes() -> None:
    lib = (LUA / "lib.lua").read_text()
    names, values = re.search(r"local ([A-Z_, ]+) = ([\d, ]+)\n", lib).groups()  # type: ignore[union-attr]
    lua_codes = dict(zip(names.split(", "), map(int, values.split(", ")), strict=True))
    assert lua_codes == {c.name: c.value for c in Code}


@pytest.mark.parametrize("name", ["lib", *SCRIPT_NAMES])
def test_script_header_codes_are_known(name: str) -> None:
    text = (LUA / f"{name}.lua").read_text()
    header = re.search(r"^-- Codes: (.+)$", text, re.M)
    assert header, f"{name}.lua has no '-- Codes:' header line"
    for number, code in re.findall(r"(\d+) ([A-Z_]+)", header.group(1)):
        assert Code[code] == int(number)
    assert re.search(r"^--\s+(KEYS|ARGV)", text, re.M), f"{name}.lua header lists no KEYS/ARGV"


# -- enqueue -------------------------------------------------------------------------


async def test_enqueue_places_ready_and_scheduled_jobs(s: Store, redis: Redis, prefix: str) -> None:
    out = await s.enqueue(Q, [NewJob(b"a", priority=5), NewJob(b"b", delay_ms=500)])
    assert [(e.seq, e.state) for e in out] == [(1, JobState.READY), (2, JobState.SCHEDULED)]
    assert await zset(redis, prefix, "ready") == {"1": (1000 - 5) * 2**40 + 1}
    assert await zset(redis, prefix, "scheduled") == {"2": T0 + 500}
    assert await field(redis, prefix, 1, "payload") == "a"
    assert await field(redis, prefix, 2, "state") == "scheduled"
    assert await redis.smembers(f"{prefix}:queues") == {Q.encode()}


async def test_enqueue_run_at_wins_over_an_earlier_delay(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a", delay_ms=100, run_at_ms=T0 + 9_000)])
    assert await zset(redis, prefix, "scheduled") == {"1": T0 + 9_000}


async def test_enqueue_idempotency_key_returns_the_first_job(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    first = await s.enqueue(Q, [NewJob(b"a", idempotency_key="k", idempotency_window_ms=1000)])
    again = await s.enqueue(Q, [NewJob(b"b", idempotency_key="k")])
    assert again[0].seq == first[0].seq and again[0].duplicate
    assert len(await zset(redis, prefix, "ready")) == 1
    assert 0 < await redis.pttl(f"{prefix}:{{{Q}}}:idem:k") <= 1000


# -- lease ---------------------------------------------------------------------------


async def test_lease_takes_priority_then_fifo_and_records_the_lease(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(
        Q,
        [
            NewJob(b"low"),
            NewJob(b"high", priority=9),
            NewJob(b"low2"),
            NewJob(b"x", lease_ms=5_000),
        ],
    )
    batch = await s.lease(Q, 3)
    assert [j.payload for j in batch.jobs] == [b"high", b"low", b"low2"]
    assert all(j.attempt == 1 and j.state is JobState.ACTIVE for j in batch.jobs)
    assert len({j.token for j in batch.jobs}) == 3
    active = await zset(redis, prefix, "active")
    assert active == {"2": T0 + 30_000, "1": T0 + 30_000, "3": T0 + 30_000}
    assert await zset(redis, prefix, "ready") == {"4": (1000 * 2**40) + 4}


async def test_lease_caps_the_deadline_by_the_execution_timeout(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a", lease_ms=60_000, timeout_ms=10_000)])
    await s.lease(Q, 1)
    assert await zset(redis, prefix, "active") == {"1": T0 + 10_000}


async def test_lease_promotes_due_jobs_itself(s: Store, clock: Clock) -> None:
    await s.enqueue(Q, [NewJob(b"later", delay_ms=1_000)])
    empty = await s.lease(Q, 1)
    assert empty.jobs == [] and empty.next_due_in_ms == 1_000
    clock.now += 1_000
    assert [j.payload for j in (await s.lease(Q, 1)).jobs] == [b"later"]


async def test_empty_lease_sets_the_waiting_flag_only_when_asked(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.lease(Q, 1)
    assert not await redis.exists(f"{prefix}:{{{Q}}}:waiting")
    await s.lease(Q, 1, waiting_flag_ms=5_000)
    assert 0 < await redis.pttl(f"{prefix}:{{{Q}}}:waiting") <= 5_000
    await s.enqueue(Q, [NewJob(b"a")])  # enqueue consumes the flag as it publishes
    assert not await redis.exists(f"{prefix}:{{{Q}}}:waiting")


# -- heartbeat -----------------------------------------------------------------------


async def test_heartbeat_extends_the_lease_and_records_progress(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"a", lease_ms=10_000)])
    seq, token = await lease_one(s)
    clock.now += 4_000
    (r,) = await s.heartbeat(Q, [HeartbeatItem(seq, token, 0, Progress(40, "hi", '{"n":1}'))])
    assert (r.outcome, r.lease_until_ms, r.cancel_requested) == (Outcome.OK, T0 + 14_000, False)
    assert await zset(redis, prefix, "active") == {"1": T0 + 14_000}
    assert await field(redis, prefix, seq, "progress.percent") == "40"
    assert await field(redis, prefix, seq, "progress.details_json") == '{"n":1}'


async def test_heartbeat_never_passes_the_execution_timeout(s: Store, clock: Clock) -> None:
    await s.enqueue(Q, [NewJob(b"a", lease_ms=10_000, timeout_ms=12_000)])
    seq, token = await lease_one(s)
    clock.now += 8_000
    (r,) = await s.heartbeat(Q, [HeartbeatItem(seq, token)])
    assert r.lease_until_ms == T0 + 12_000


@pytest.mark.parametrize("case", ["wrong token", "expired", "unknown job"])
async def test_heartbeat_refuses_a_lease_that_is_not_live(
    s: Store, redis: Redis, prefix: str, clock: Clock, case: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a", lease_ms=10_000)])
    seq, token = await lease_one(s)
    item = HeartbeatItem(seq, token, 0, Progress(50))
    if case == "wrong token":
        item = HeartbeatItem(seq, token + "x", 0, Progress(50))
    elif case == "expired":
        clock.now += 10_000
    else:
        item = HeartbeatItem(99, token)
    before = await redis.hgetall(f"{prefix}:{{{Q}}}:job:{seq}")
    (r,) = await s.heartbeat(Q, [item])
    assert r.outcome is (Outcome.NOT_FOUND if case == "unknown job" else Outcome.LEASE_LOST)
    assert await redis.hgetall(f"{prefix}:{{{Q}}}:job:{seq}") == before
    assert await zset(redis, prefix, "active") == {"1": T0 + 10_000}


# -- complete ------------------------------------------------------------------------


async def test_complete_moves_the_job_to_completed_once(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"a")])
    seq, token = await lease_one(s)
    clock.now += 5
    (r,) = await s.complete(Q, [CompleteItem(seq, token, b"out", "text/plain")])
    assert r.outcome is Outcome.OK
    assert await zset(redis, prefix, "active") == {}
    assert await zset(redis, prefix, "completed") == {"1": T0 + 5}
    assert await field(redis, prefix, seq, "result") == "out"
    assert await field(redis, prefix, seq, "token") is None
    # A retry whose first reply was lost: OK again, nothing written.
    (again,) = await s.complete(Q, [CompleteItem(seq, token, b"second")])
    assert again.outcome is Outcome.OK
    assert await field(redis, prefix, seq, "result") == "out"
    assert await zset(redis, prefix, "completed") == {"1": T0 + 5}
    (other,) = await s.complete(Q, [CompleteItem(seq, token + "x", b"third")])
    assert other.outcome is Outcome.LEASE_LOST
    clock.now += 600_001  # past the replay window: the token is just stale
    (late,) = await s.complete(Q, [CompleteItem(seq, token, b"late")])
    assert late.outcome is Outcome.LEASE_LOST
    assert await field(redis, prefix, seq, "result") == "out"


async def test_a_retried_fail_or_release_gets_its_first_outcome(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"a", max_attempts=3), NewJob(b"b")])
    leased = (await s.lease(Q, 2)).jobs
    fail = FailItem(leased[0].seq, leased[0].token, JobError("E"), retry_delay_ms=500)
    (first,) = await s.fail(Q, [fail])
    release = ReleaseItem(leased[1].seq, leased[1].token, 0)
    (released,) = await s.release(Q, [release])
    clock.now += 100
    (again,) = await s.fail(Q, [fail])
    assert (again.outcome, again.state, again.due_ms) == (
        Outcome.OK,
        JobState.SCHEDULED,
        first.due_ms,
    )
    assert await field(redis, prefix, leased[0].seq, "attempt") == "1"
    assert await zset(redis, prefix, "scheduled") == {str(leased[0].seq): T0 + 500}
    (released_again,) = await s.release(Q, [release])
    assert (released_again.outcome, released_again.state) == (Outcome.OK, released.state)
    assert await field(redis, prefix, leased[1].seq, "releases") == "1"
    # A Complete with a Fail's token is not that Fail again.
    (other,) = await s.complete(Q, [CompleteItem(leased[0].seq, leased[0].token)])
    assert other.outcome is Outcome.LEASE_LOST


# -- fail and backoff ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff(BackoffKind.FIXED, 1_000, 60_000), [1_000, 1_000, 1_000]),
        (Backoff(BackoffKind.LINEAR, 1_000, 60_000), [1_000, 2_000, 3_000]),
        (Backoff(BackoffKind.EXPONENTIAL, 2_000, 60_000, 2.0), [2_000, 4_000, 8_000]),
        (Backoff(BackoffKind.EXPONENTIAL, 2_000, 5_000, 3.0), [2_000, 5_000, 5_000]),
    ],
)
async def test_fail_retries_after_the_backoff_policy(
    s: Store, redis: Redis, prefix: str, clock: Clock, backoff: Backoff, delays: list[int]
) -> None:
    await s.enqueue(Q, [NewJob(b"a", max_attempts=len(delays) + 1, backoff=backoff)])
    for delay in delays:
        seq, token = await lease_one(s)
        (r,) = await s.fail(Q, [FailItem(seq, token, JobError("E", "boom"))])
        assert (r.state, r.due_ms) == (JobState.SCHEDULED, clock.now + delay)
        assert await zset(redis, prefix, "scheduled") == {"1": clock.now + delay}
        clock.now += delay


async def test_jitter_only_shortens_the_delay(s: Store, clock: Clock) -> None:
    backoff = Backoff(BackoffKind.FIXED, 10_000, 10_000, 2.0, 0.5)
    await s.enqueue(Q, [NewJob(b"a", max_attempts=50, backoff=backoff)])
    seen = set()
    for _ in range(20):
        seq, token = await lease_one(s)
        (r,) = await s.fail(Q, [FailItem(seq, token, JobError("E"))])
        seen.add(r.due_ms - clock.now)
        clock.now = r.due_ms
    assert all(5_000 <= d <= 10_000 for d in seen) and len(seen) > 5


async def test_fail_with_a_retry_delay_overrides_the_policy(s: Store, clock: Clock) -> None:
    await s.enqueue(Q, [NewJob(b"a")])
    seq, token = await lease_one(s)
    (r,) = await s.fail(Q, [FailItem(seq, token, JobError("E"), retry_delay_ms=42_000)])
    assert r.due_ms == T0 + 42_000
    assert (await s.lease(Q, 1)).jobs == []  # not leasable before it is due


async def test_zero_retry_delay_makes_the_job_ready_at_once(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a")])
    seq, token = await lease_one(s)
    (r,) = await s.fail(Q, [FailItem(seq, token, JobError("E"), retry_delay_ms=0)])
    assert r.state is JobState.READY and "1" in await zset(redis, prefix, "ready")


@pytest.mark.parametrize("case", ["non-retryable", "exhausted"])
async def test_fail_dead_letters_and_keeps_the_error(
    s: Store, redis: Redis, prefix: str, case: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a", max_attempts=1 if case == "exhausted" else 5)])
    seq, token = await lease_one(s)
    error = JobError("BadInput", "no such wallet", non_retryable=case == "non-retryable")
    (r,) = await s.fail(Q, [FailItem(seq, token, error)])
    assert r.state is JobState.DEAD
    assert await zset(redis, prefix, "dead") == {"1": T0}
    job = await s.get(Q, seq)
    assert job is not None and job.error is not None
    assert (job.error.type, job.error.message) == ("BadInput", "no such wallet")


async def test_fail_after_cancel_request_ends_cancelled(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a")])
    seq, token = await lease_one(s)
    assert (await s.cancel(Q, seq)).state is JobState.ACTIVE
    (r,) = await s.fail(Q, [FailItem(seq, token, JobError("Cancelled"))])
    assert r.state is JobState.CANCELLED
    assert "1" in await zset(redis, prefix, "cancelled")


# -- reclaim, promote, prune ---------------------------------------------------------


async def test_reclaim_takes_back_expired_leases_as_failed_attempts(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    backoff = Backoff(BackoffKind.FIXED, 1_000, 1_000)
    await s.enqueue(Q, [NewJob(b"a", lease_ms=5_000, backoff=backoff), NewJob(b"b")])
    seq, _ = await lease_one(s)
    clock.now += 4_999
    assert await s.reclaim(Q) == []
    clock.now += 1
    (reclaimed,) = await s.reclaim(Q)
    assert (reclaimed.seq, reclaimed.state, reclaimed.error_type, reclaimed.attempt) == (
        seq,
        JobState.SCHEDULED,
        "LEASE_EXPIRED",
        1,
    )
    assert await zset(redis, prefix, "scheduled") == {"1": clock.now + 1_000}
    job = await s.get(Q, seq)
    assert job is not None and job.error is not None and job.error.type == "LEASE_EXPIRED"
    clock.now += 1_000
    leased = (await s.lease(Q, 2)).jobs
    assert [(j.seq, j.attempt) for j in leased] == [(1, 2), (2, 1)]


async def test_reclaim_enforces_the_execution_timeout_despite_heartbeats(
    s: Store, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"a", lease_ms=2_000, timeout_ms=5_000, max_attempts=1)])
    seq, token = await lease_one(s)
    for _ in range(3):
        clock.now += 1_500
        await s.heartbeat(Q, [HeartbeatItem(seq, token)])
    clock.now += 500
    (reclaimed,) = await s.reclaim(Q)
    assert (reclaimed.state, reclaimed.error_type) == (JobState.DEAD, "EXECUTION_TIMEOUT")
    job = await s.get(Q, seq)
    assert job is not None and job.state is JobState.DEAD
    assert job.error is not None and job.error.type == "EXECUTION_TIMEOUT"


async def test_settling_scripts_return_the_jobs_trace_context(s: Store, clock: Clock) -> None:
    """complete, fail and reclaim hand back the stored context, so the broker can record
    each transition in the job's trace without another round trip."""
    trace = TraceContext("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "k=v", "b=1")
    await s.enqueue(Q, [NewJob(b"x", trace=trace, lease_ms=1_000) for _ in range(3)])
    leased = (await s.lease(Q, 3)).jobs
    assert [j.trace for j in leased] == [trace] * 3
    (done,) = await s.complete(Q, [CompleteItem(leased[0].seq, leased[0].token)])
    (failed,) = await s.fail(Q, [FailItem(leased[1].seq, leased[1].token, JobError("E"))])
    clock.now += 1_000
    (reclaimed,) = await s.reclaim(Q)
    assert (done.trace, failed.trace, reclaimed.trace) == (trace, trace, trace)
    (again,) = await s.complete(Q, [CompleteItem(leased[0].seq, leased[0].token)])
    assert again.outcome is Outcome.OK and again.trace == TraceContext()  # no second span
    (lost,) = await s.complete(Q, [CompleteItem(leased[2].seq, leased[2].token)])
    assert lost.outcome is Outcome.LEASE_LOST and lost.trace == TraceContext()


async def test_promote_moves_only_due_jobs(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"a", delay_ms=100), NewJob(b"b", delay_ms=200)])
    clock.now += 150
    assert await s.promote(Q) == 1
    assert list(await zset(redis, prefix, "ready")) == ["1"]
    assert list(await zset(redis, prefix, "scheduled")) == ["2"]


async def test_prune_applies_age_and_count(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await s.enqueue(Q, [NewJob(b"x") for _ in range(5)])
    for _ in range(5):
        seq, token = await lease_one(s)
        await s.complete(Q, [CompleteItem(seq, token)])
        clock.now += 1_000
    # Ages now 5s..1s. Keep at most 3, none older than 4.5 s: jobs 1 and 2 go.
    removed = await s.prune(Q, Retention(completed_age_ms=4_500, completed_count=3))
    assert removed == 2
    assert list(await zset(redis, prefix, "completed")) == ["3", "4", "5"]
    assert not await redis.exists(f"{prefix}:{{{Q}}}:job:1")


# -- cancel and watch ----------------------------------------------------------------


async def test_cancel_by_state(s: Store, redis: Redis, prefix: str) -> None:
    await s.enqueue(Q, [NewJob(b"a"), NewJob(b"b", delay_ms=10_000), NewJob(b"c")])
    assert (await s.cancel(Q, 1)).state is JobState.CANCELLED
    assert (await s.cancel(Q, 2)).state is JobState.CANCELLED
    assert (await s.cancel(Q, 2)).state is JobState.CANCELLED  # no-op
    assert list(await zset(redis, prefix, "cancelled")) == ["1", "2"]
    seq, token = await lease_one(s)
    await s.complete(Q, [CompleteItem(seq, token)])
    finished = await s.cancel(Q, seq)
    assert (finished.outcome, finished.state) == (Outcome.JOB_FINISHED, JobState.COMPLETED)
    assert (await s.cancel(Q, 42)).outcome is Outcome.NOT_FOUND


async def test_events_are_written_only_once_a_job_is_watched(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a"), NewJob(b"b")])
    watched = await s.watch(Q, 2)
    assert watched is not None and watched[1] == "0-0"
    batch = await s.lease(Q, 2)
    for job in batch.jobs:
        await s.heartbeat(Q, [HeartbeatItem(job.seq, job.token, 0, Progress(10))])
    assert not await redis.exists(f"{prefix}:{{{Q}}}:events:1")
    events = await s.events_after(Q, 2, "0-0", 10)
    assert [(e.kind, e.state) for e in events] == [
        ("state", JobState.ACTIVE),
        ("progress", JobState.ACTIVE),
    ]
    assert events[1].progress == Progress(10.0, "", "")
    assert await s.watch(Q, 99) is None


async def test_release_hands_a_job_back_without_counting_the_attempt(
    s: Store, redis: Redis, prefix: str
) -> None:
    await s.enqueue(Q, [NewJob(b"a", max_attempts=1)])
    seq, token = await lease_one(s)
    (r,) = await s.release(Q, [ReleaseItem(seq, token)])
    assert (r.outcome, r.state) == (Outcome.OK, JobState.READY)
    assert await field(redis, prefix, seq, "attempt") == "1"  # the fencing number stays
    assert await field(redis, prefix, seq, "releases") == "1"
    assert await field(redis, prefix, seq, "error.type") is None
    assert "1" in await zset(redis, prefix, "ready") and await zset(redis, prefix, "active") == {}
    (again,) = (await s.lease(Q, 1)).jobs  # max_attempts=1 still allows its one attempt
    assert (again.attempt, again.counted_attempts) == (2, 1)
    (r,) = await s.fail(Q, [FailItem(seq, again.token, JobError("Boom"))])
    assert r.state == JobState.DEAD  # and that one counted attempt was the last
