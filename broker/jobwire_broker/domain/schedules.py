"""Schedules: creating, changing and reading them, and the ticker every replica runs,
which fires each due tick through one script that claims it and enqueues its job (so
replicas may all tick at once and every tick still fires exactly once)."""

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass

from ..store import Store, StoreUnavailable
from ..store import schedules as db
from ..store.batches import JOBS_PER_CALL
from . import schedule_times as times
from .broker import store_errors
from .errors import schedule_exists, schedule_not_found
from .jitter import JITTER
from .model import NewJob
from .schedule_model import CatchUp, ScheduleRecord, ScheduleSpec

log = logging.getLogger(__name__)
MISSED_AFTER_MS = 60_000  # a tick not fired within this of its time was missed
NEXT_RUNS = 5
DEADLINE_MARGIN_MS = 1_000  # a caught-up tick's deadline this close to now is not fired
MAX_ON_TIME = 1_000  # ticks fired at once that are not missed (a stalled ticker's)
HEADER_NAME = "jobwire-schedule"
HEADER_TIME = "jobwire-schedule-time"


# -- reading ---------------------------------------------------------------------------


def next_runs(rec: ScheduleRecord, now: int) -> list[int]:
    if rec.paused:
        return []
    return times.after(rec.spec, rec.anchor_ms, max(now, rec.cursor_ms), NEXT_RUNS)


def _with_runs(rec: ScheduleRecord, now: int) -> ScheduleRecord:
    return dataclasses.replace(rec, next_run_ms=next_runs(rec, now))


async def _find(store: Store, name: str) -> ScheduleRecord:
    queue = await db.queue_of(store, name)
    rec = await db.get(store, queue, name) if queue is not None else None
    if rec is None:
        raise schedule_not_found(name)
    return rec


@store_errors
async def get_schedule(store: Store, name: str) -> ScheduleRecord:
    rec = await _find(store, name)
    return _with_runs(rec, await db.now_ms(store))


@store_errors
async def list_schedules(store: Store, queue: str = "") -> list[ScheduleRecord]:
    found = await db.registry(store)
    items = sorted((n, q) for n, q in found.items() if not queue or q == queue)
    now = await db.now_ms(store)
    return [_with_runs(r, now) for r in await db.get_many(store, items)]


# -- writing ---------------------------------------------------------------------------


def _first_due(spec: ScheduleSpec, anchor: int, after: int) -> int:
    runs = times.after(spec, anchor, after, 1)
    return runs[0] if runs else -1


@store_errors
async def create_schedule(store: Store, spec: ScheduleSpec) -> ScheduleRecord:
    """Stores a new schedule; its first tick is the first after now. The name is
    claimed in the registry first, so two creates of one name never both succeed."""
    taken = await db.claim_name(store, spec.name, spec.queue)
    if taken is not None:
        if await db.get(store, taken, spec.name) is not None:
            raise schedule_exists(spec.name)
        await db.set_queue(store, spec.name, spec.queue)  # a create that failed half-way
    now = await db.now_ms(store)
    values = {**db.stored(spec), "cursor_ms": str(now), "anchor_ms": str(now), "paused": "0"}
    try:
        done = await db.put(store, spec.queue, spec.name, True, values, _first_due(spec, now, now))
    except StoreUnavailable:
        with contextlib.suppress(StoreUnavailable):
            await db.unregister(store, spec.name)
        raise
    if not done:
        raise schedule_exists(spec.name)
    return await get_schedule(store, spec.name)


TIMING = ("cron", "time_zone", "interval_ms")


@store_errors
async def update_schedule(store: Store, spec: ScheduleSpec) -> ScheduleRecord:
    """Replaces a schedule's spec (the api merged the mask's fields into it). A new
    timing counts from now; a new queue moves the record there."""
    rec = await _find(store, spec.name)
    now = await db.now_ms(store)
    values = db.stored(spec)
    retimed = any(getattr(rec.spec, f) != getattr(spec, f) for f in TIMING)
    cursor, anchor = (now, now) if retimed else (rec.cursor_ms, rec.anchor_ms)
    values.update(cursor_ms=str(cursor), anchor_ms=str(anchor))
    due = -1 if rec.paused else _first_due(spec, anchor, max(cursor, now))
    if spec.queue == rec.spec.queue:
        if not await db.put(store, spec.queue, spec.name, False, values, due):
            raise schedule_not_found(spec.name)
    else:
        state = {
            "paused": "1" if rec.paused else "0",
            "last_tick_ms": str(rec.last_tick_ms),
            "last_job_id": rec.last_job_id,
        }
        await db.delete(store, spec.queue, spec.name)  # a move that failed half-way
        await db.put(store, spec.queue, spec.name, True, {**values, **state}, due)
        await db.set_queue(store, spec.name, spec.queue)
        await db.delete(store, rec.spec.queue, spec.name)
    return await get_schedule(store, spec.name)


@store_errors
async def delete_schedule(store: Store, name: str) -> None:
    queue = await db.queue_of(store, name)
    if queue is None or not await db.delete(store, queue, name):
        raise schedule_not_found(name)
    await db.unregister(store, name)


@store_errors
async def set_paused(store: Store, name: str, paused: bool) -> ScheduleRecord:
    """Pauses, or resumes from the next tick after now; a no-op in that state already."""
    rec = await _find(store, name)
    if rec.paused != paused:
        now = await db.now_ms(store)
        values = {"paused": "1" if paused else "0"}
        due = -1
        if not paused:  # the ticks while paused are skipped
            values["cursor_ms"] = str(now)
            due = _first_due(rec.spec, rec.anchor_ms, now)
        if not await db.put(store, rec.spec.queue, name, False, values, due):
            raise schedule_not_found(name)
    return await get_schedule(store, name)


# -- firing ----------------------------------------------------------------------------


def plan(rec: ScheduleRecord, now: int) -> list[int]:
    """The ticks to fire at `now`, oldest first: those due within MISSED_AFTER_MS, after
    the missed ones the catch-up policy keeps."""
    spec, cursor = rec.spec, rec.cursor_ms
    missed_until = now - MISSED_AFTER_MS
    on_time = times.between(spec, rec.anchor_ms, max(cursor, missed_until), now, MAX_ON_TIME)
    keep = {CatchUp.SKIP: 0, CatchUp.ONE: 1, CatchUp.ALL: spec.catch_up_limit}[spec.catch_up]
    missed = times.between(spec, rec.anchor_ms, cursor, missed_until, keep)
    return missed + on_time


def job_for(rec: ScheduleRecord, tick_ms: int) -> NewJob:
    """The job a tick enqueues: the template, with the two schedule headers."""
    job = rec.spec.job
    headers = {**job.headers, HEADER_NAME: rec.spec.name, HEADER_TIME: times.rfc3339(tick_ms)}
    deadline = tick_ms + rec.spec.start_within_ms if rec.spec.start_within_ms else None
    return dataclasses.replace(job, headers=headers, start_deadline_ms=deadline)


async def fire_due(store: Store, rec: ScheduleRecord, now: int) -> int:
    """Fires a due schedule's ticks, JOBS_PER_CALL per script call; returns how many
    jobs this replica fired (0 when another claimed the ticks first)."""
    ticks = plan(rec, now)
    if rec.spec.start_within_ms:  # a tick whose start deadline has passed is dropped
        ticks = [t for t in ticks if t + rec.spec.start_within_ms > now + DEADLINE_MARGIN_MS]
    next_due = _first_due(rec.spec, rec.anchor_ms, now)
    fired = 0
    for start in range(0, max(len(ticks), 1), JOBS_PER_CALL):
        part = ticks[start : start + JOBS_PER_CALL]
        rest = ticks[start + JOBS_PER_CALL :]
        cursor, due = (part[-1], rest[0]) if rest else (now, next_due)
        jobs = [(t, job_for(rec, t)) for t in part]
        result = await db.fire(store, rec, jobs, cursor, due)
        if not result.claimed:
            break
        fired += len(result.fired)
        rec = dataclasses.replace(rec, cursor_ms=cursor)
    return fired


@dataclass(frozen=True, slots=True)
class TickerSettings:
    interval_s: float = 0.2


class ScheduleTicker:
    """Every replica runs one: finds due schedules and fires them."""

    def __init__(self, store: Store, settings: TickerSettings | None = None) -> None:
        self.store = store
        self.settings = settings or TickerSettings()
        self._registry: dict[str, str] = {}  # name -> queue, as of the last whole scan
        self._scanning: dict[str, str] = {}  # what the scan under way has found so far
        self._cursor = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.debug("schedules skipped, store unavailable: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_s * JITTER.uniform(0.8, 1.2)):
                    await stop.wait()

    async def _scan(self) -> None:
        """Reads one bounded page of the registry per pass (never the whole of it); the
        queues known are those of the last complete scan and of this one so far."""
        self._cursor, found = await db.registry_page(self.store, self._cursor)
        self._scanning.update(found)
        if self._cursor == 0:
            self._registry, self._scanning = self._scanning, {}

    async def tick(self) -> int:
        """One pass: a page of the registry, then each known queue's due schedules (a
        bounded range of its due set); returns the jobs fired."""
        await self._scan()
        queues = sorted({*self._registry.values(), *self._scanning.values()})
        now = await db.now_ms(self.store)
        counts = await asyncio.gather(*(self._queue(q, now) for q in queues))
        return sum(counts)

    async def _queue(self, queue: str, now: int) -> int:
        fired = 0
        for name in await db.due(self.store, queue, now, JOBS_PER_CALL):
            moved = self._scanning.get(name) or self._registry.get(name)
            if moved not in (None, queue):
                continue  # left behind by a move to another queue that did not finish
            rec = await db.get(self.store, queue, name)
            if rec is None or rec.paused:
                continue
            try:
                fired += await fire_due(self.store, rec, now)
            except StoreUnavailable:
                raise
            except Exception:  # one broken record must not stop the others
                log.exception("schedule %s could not fire", name)
        return fired
