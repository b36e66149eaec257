"""Schedules: each tick fires exactly once however many tickers run, at the right instants
across daylight-saving changes, with the catch-up and overlap policies as documented.
Against a real server; the clock is simulated (the scripts' `now` override) so hours and
outages pass without sleeping, except in the end-to-end tests over real gRPC."""

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest
from jobwire_broker.domain import schedules
from jobwire_broker.domain.model import CompleteItem, NewJob
from jobwire_broker.domain.schedule_model import CatchUp, Overlap, ScheduleSpec
from jobwire_broker.domain.schedule_times import rfc3339
from jobwire_broker.store import Store, schema
from redis.asyncio import Redis

pytestmark = pytest.mark.redis_matrix

Q = "sq"
T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a whole minute


class Clock:
    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)


def spec(name: str = "s", **kwargs: object) -> ScheduleSpec:
    values: dict[str, object] = {"queue": Q, "job": NewJob(payload=b"tick"), **kwargs}
    if "cron" not in values and "interval_ms" not in values:
        values["interval_ms"] = 1_000
    return ScheduleSpec(name=name, **values)  # type: ignore[arg-type]


async def fired(redis: Redis, prefix: str, queue: str = Q) -> list[tuple[int, str, str]]:
    """Every job of the queue as (seq, its schedule, its schedule time), by seq."""
    out = []
    for state in ("ready", "scheduled", "active", "completed", "dead", "cancelled"):
        for seq in await redis.zrange(f"{prefix}:{{{queue}}}:{state}", 0, -1):
            raw = await redis.hgetall(f"{prefix}:{{{queue}}}:job:{seq.decode()}")
            headers = schema.job(queue, raw).headers
            out.append((int(seq), headers["jobwire-schedule"], headers["jobwire-schedule-time"]))
    return sorted(out)


def stamp(t: int) -> str:
    return rfc3339(t)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def s(redis: Redis, prefix: str, clock: Clock) -> Store:
    return Store(redis, prefix, clock=clock)


def test_schedule_fields_match_lib_lua() -> None:
    from jobwire_broker.store.scripts import script_source

    lib = script_source("lib")
    table = lib.split("local SC = {", 1)[1].split("}", 1)[0]
    names = [part.split("=")[1].strip().strip("'") for part in table.split(",") if "=" in part]
    assert names == list(schema.SCHEDULE_SCRIPT_FIELDS)


async def test_three_tickers_fire_each_tick_once(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    """Three replicas' tickers on one Redis, all ticking at every step: one job a tick."""
    await schedules.create_schedule(s, spec())
    tickers = [schedules.ScheduleTicker(Store(redis, prefix, clock=clock)) for _ in range(3)]
    counts = []
    for step in range(1, 31):
        clock.now = T0 + step * 1_000 + 20
        counts.append(sum(await asyncio.gather(*(t.tick() for t in tickers))))
    assert counts == [1] * 30
    jobs = await fired(redis, prefix)
    assert [t for _, _, t in jobs] == [stamp(T0 + k * 1_000) for k in range(1, 31)]
    assert {name for _, name, _ in jobs} == {"s"}
    rec = await schedules.get_schedule(s, "s")
    assert rec.last_tick_ms == T0 + 30_000
    assert rec.last_job_id == f"{Q}:{jobs[-1][0]}"


async def test_a_stale_claim_fires_nothing(s: Store, redis: Redis, prefix: str) -> None:
    """Two replicas that read the same record: the second claim of the tick is a no-op."""
    await schedules.create_schedule(s, spec())
    rec = await schedules.get_schedule(s, "s")
    now = T0 + 1_500
    first, second = await asyncio.gather(
        schedules.fire_due(s, rec, now), schedules.fire_due(s, rec, now)
    )
    assert sorted((first, second)) == [0, 1]
    assert len(await fired(redis, prefix)) == 1


async def test_cron_in_a_time_zone_across_dst(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    """Europe/Berlin: 02:30 does not happen on 2026-03-29 (fires at 03:00 CEST, the first
    instant after the gap); 02:00 and 02:30 happen twice on 2026-10-25 (fire once each,
    the first time)."""
    clock.now = ms(2026, 3, 27, 12)
    await schedules.create_schedule(
        s, spec("spring", cron="30 2 * * *", time_zone="Europe/Berlin", interval_ms=0)
    )
    rec = await schedules.get_schedule(s, "spring")
    assert rec.next_run_ms == [
        ms(2026, 3, 28, 1, 30),
        ms(2026, 3, 29, 1, 0),
        ms(2026, 3, 30, 0, 30),
        ms(2026, 3, 31, 0, 30),
        ms(2026, 4, 1, 0, 30),
    ]
    ticker = schedules.ScheduleTicker(s)
    for name, cron, start, end in (
        ("spring", "30 2 * * *", ms(2026, 3, 27, 12), ms(2026, 3, 31)),
        ("autumn", "0,30 2 * * *", ms(2026, 10, 24, 12), ms(2026, 10, 27)),
    ):
        clock.now = start
        if name == "autumn":
            await schedules.create_schedule(
                s, spec(name, cron=cron, time_zone="Europe/Berlin", interval_ms=0)
            )
        while True:
            rec = await schedules.get_schedule(s, name)
            if rec.next_run_ms[0] > end:
                break
            clock.now = rec.next_run_ms[0] + 300
            await ticker.tick()
            # Nothing fires early: a moment before the next tick, the ticker does nothing.
            rec = await schedules.get_schedule(s, name)
            clock.now = rec.next_run_ms[0] - 1
            assert await ticker.tick() == 0
        await schedules.delete_schedule(s, name)
    times = [(n, t) for _, n, t in await fired(redis, prefix)]
    assert times == [
        ("spring", "2026-03-28T01:30:00Z"),
        ("spring", "2026-03-29T01:00:00Z"),
        ("spring", "2026-03-30T00:30:00Z"),
        ("autumn", "2026-10-25T00:00:00Z"),  # 02:00 CEST
        ("autumn", "2026-10-25T00:30:00Z"),  # 02:30 CEST; not again at 02:00/02:30 CET
        ("autumn", "2026-10-26T01:00:00Z"),
        ("autumn", "2026-10-26T01:30:00Z"),
    ]


@pytest.mark.parametrize(
    ("policy", "limit", "expected"),
    [
        (CatchUp.SKIP, 100, [600]),
        (CatchUp.ONE, 100, [540, 600]),
        (CatchUp.ALL, 100, [60 * k for k in range(1, 11)]),
        (CatchUp.ALL, 3, [420, 480, 540, 600]),
    ],
)
async def test_catch_up_after_a_ten_minute_outage(
    s: Store,
    redis: Redis,
    prefix: str,
    clock: Clock,
    policy: CatchUp,
    limit: int,
    expected: list[int],
) -> None:
    """An every-minute cron; no broker for 10 minutes, then one tick of the ticker. The
    tick of the outage's last minute is on time (within 60 s); the nine before it are
    missed, and the policy says which of them fire."""
    clock.now = T0 - 30_000
    await schedules.create_schedule(
        s, spec(cron="* * * * *", interval_ms=0, catch_up=policy, catch_up_limit=limit)
    )
    ticker = schedules.ScheduleTicker(s)
    clock.now = T0 + 500
    assert await ticker.tick() == 1  # the tick at T0, on time
    clock.now = T0 + 600_000 + 500
    await ticker.tick()
    jobs = await fired(redis, prefix)
    assert [t for _, _, t in jobs] == [stamp(T0)] + [stamp(T0 + x * 1000) for x in expected]
    # The outage is over: the next tick is the next minute's, once.
    clock.now = T0 + 660_000 + 500
    assert await ticker.tick() == 1
    assert await ticker.tick() == 0


async def test_catch_up_all_fires_more_than_one_batch(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    """1000 missed every-second ticks, at most 50 jobs per script call."""
    await schedules.create_schedule(s, spec(catch_up=CatchUp.ALL, catch_up_limit=1000))
    clock.now = T0 + 2_000_000
    await schedules.ScheduleTicker(s).tick()
    jobs = await fired(redis, prefix)
    on_time = 60  # (now - 60 s, now]
    assert len(jobs) == 1000 + on_time
    assert len({t for _, _, t in jobs}) == len(jobs)


async def test_overlap_skip_holds_while_the_job_is_pending_or_active(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await schedules.create_schedule(s, spec(overlap=Overlap.SKIP))
    ticker = schedules.ScheduleTicker(s)

    async def at(second: int) -> int:
        clock.now = T0 + second * 1_000 + 10
        return await ticker.tick()

    assert await at(1) == 1
    assert await at(2) == 0  # the first job is ready
    batch = await s.lease(Q, 1)
    (job,) = batch.jobs
    assert await at(3) == 0  # active
    assert await at(4) == 0
    rec = await schedules.get_schedule(s, "s")
    assert rec.last_tick_ms == T0 + 4_000  # a skipped tick counts as handled
    assert rec.last_job_id == f"{Q}:{job.seq}"
    await s.complete(Q, [CompleteItem(job.seq, job.token)])
    assert await at(5) == 1
    assert [t for _, _, t in await fired(redis, prefix)] == [stamp(T0 + 1_000), stamp(T0 + 5_000)]


async def test_overlap_allow_fires_while_the_job_is_active(s: Store, clock: Clock) -> None:
    await schedules.create_schedule(s, spec())
    ticker = schedules.ScheduleTicker(s)
    for second in range(1, 4):
        clock.now = T0 + second * 1_000 + 10
        assert await ticker.tick() == 1
        await s.lease(Q, 1)


async def test_paused_ticks_are_skipped_not_caught_up(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    await schedules.create_schedule(s, spec(catch_up=CatchUp.ALL))
    ticker = schedules.ScheduleTicker(s)
    rec = await schedules.set_paused(s, "s", True)
    assert rec.paused and rec.next_run_ms == []
    assert (await schedules.set_paused(s, "s", True)).update_ms == rec.update_ms  # a no-op
    clock.now = T0 + 5_500
    assert await ticker.tick() == 0
    rec = await schedules.set_paused(s, "s", False)
    assert rec.next_run_ms[0] == T0 + 6_000
    clock.now = T0 + 6_100
    assert await ticker.tick() == 1
    assert [t for _, _, t in await fired(redis, prefix)] == [stamp(T0 + 6_000)]


async def test_update_retimes_and_moves(s: Store, redis: Redis, prefix: str, clock: Clock) -> None:
    await schedules.create_schedule(s, spec())
    clock.now = T0 + 10_250
    rec = await schedules.update_schedule(s, spec(interval_ms=5_000))
    assert rec.next_run_ms[:2] == [T0 + 15_250, T0 + 20_250]  # counted from the change
    moved = dataclasses.replace(spec(interval_ms=5_000), queue="other")
    rec = await schedules.update_schedule(s, moved)
    assert rec.spec.queue == "other"
    assert not await redis.exists(f"{prefix}:{{{Q}}}:schedule:s")
    clock.now = T0 + 15_300
    assert await schedules.ScheduleTicker(s).tick() == 1
    assert [t for _, _, t in await fired(redis, prefix, "other")] == [stamp(T0 + 15_250)]
    assert [r.spec.name for r in await schedules.list_schedules(s, "other")] == ["s"]
    assert await schedules.list_schedules(s, Q) == []
    await schedules.delete_schedule(s, "s")
    assert await schedules.list_schedules(s) == []
    assert await redis.keys(f"{prefix}:{{other}}:schedule*") == []


async def test_start_within_sets_deadlines_and_drops_past_ones(
    s: Store, redis: Redis, prefix: str, clock: Clock
) -> None:
    """Each fired job's start deadline is its tick time plus start_within; after an
    outage, catch-up ticks whose deadline has already passed are not fired."""
    clock.now = T0
    await schedules.create_schedule(
        s, spec(catch_up=CatchUp.ALL, catch_up_limit=1000, start_within_ms=90_000)
    )
    ticker = schedules.ScheduleTicker(s)
    clock.now = T0 + 1_100
    assert await ticker.tick() == 1
    seq = (await fired(redis, prefix))[0][0]
    job = schema.job(Q, await redis.hgetall(f"{prefix}:{{{Q}}}:job:{seq}"))
    assert job.start_deadline_ms == T0 + 91_000
    clock.now = T0 + 600_000 + 100  # 10 minutes later
    await ticker.tick()
    times = [t for _, _, t in await fired(redis, prefix)][1:]
    # Ticks after T0 + 511 s still have more than a second to go before their deadline.
    assert times == [stamp(T0 + x * 1000) for x in range(512, 601)]
