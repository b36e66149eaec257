"""Schedules in Redis: each one's record lives in its queue's slot (`schedule:<name>`,
with the queue's `schedules` zset of next due times), so one script claims a tick and
enqueues its job; a global hash of name -> queue lists them all. The record holds the
job template as MessagePack of NewJob's stored fields (only Python reads it)."""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import msgpack

from ..domain.model import Backoff, BackoffKind, NewJob, TraceContext
from ..domain.schedule_model import CatchUp, Overlap, ScheduleRecord, ScheduleSpec
from . import schema
from .keys import queue_key, schedule_registry_key
from .store import Store, unavailable_on_connection_errors

SCAN_COUNT = 100  # registry entries per HSCAN call
_TEMPLATE_FIELDS = (
    "payload",
    "content_type",
    "headers",
    "priority",
    "delay_ms",
    "max_attempts",
    "lease_ms",
    "timeout_ms",
)


class Fired(NamedTuple):
    tick_ms: int
    seq: int


class FireResult(NamedTuple):
    claimed: bool
    fired: list[Fired]
    skipped: int


def _template(job: NewJob) -> bytes:
    values: dict[str, Any] = {n: getattr(job, n) for n in _TEMPLATE_FIELDS}
    values["headers"] = dict(job.headers)
    if job.backoff is not None:
        values["backoff"] = list(dataclasses.astuple(job.backoff))
    values["trace"] = list(dataclasses.astuple(job.trace))
    return cast(bytes, msgpack.packb(values, use_bin_type=True))


def _job(raw: bytes) -> NewJob:
    values = msgpack.unpackb(raw, raw=False)
    backoff = values.pop("backoff", None)
    trace = values.pop("trace", ["", "", ""])
    return NewJob(
        **values,
        backoff=Backoff(BackoffKind(backoff[0]), *backoff[1:]) if backoff else None,
        trace=TraceContext(*trace),
    )


def stored(spec: ScheduleSpec) -> dict[str, bytes | str]:
    """The record fields of a schedule's spec (its state fields are the scripts')."""
    return {
        "queue": spec.queue,
        "cron": spec.cron,
        "time_zone": spec.time_zone,
        "interval_ms": str(spec.interval_ms),
        "template": _template(spec.job),
        "start_within_ms": str(spec.start_within_ms),
        "overlap": str(spec.overlap.value),
        "catch_up": str(spec.catch_up.value),
        "catch_up_limit": str(spec.catch_up_limit),
    }


def record(name: str, raw: dict[bytes, bytes]) -> ScheduleRecord:
    t = {k.decode(): v for k, v in raw.items()}

    def text(n: str) -> str:
        return t.get(n, b"").decode()

    def num(n: str) -> int:
        return int(t.get(n, b"0"))

    spec = ScheduleSpec(
        name=name,
        queue=text("queue"),
        job=_job(t["template"]),
        cron=text("cron"),
        time_zone=text("time_zone"),
        interval_ms=num("interval_ms"),
        start_within_ms=num("start_within_ms"),
        overlap=Overlap(num("overlap")),
        catch_up=CatchUp(num("catch_up")),
        catch_up_limit=num("catch_up_limit"),
    )
    return ScheduleRecord(
        spec=spec,
        paused=text("paused") == "1",
        cursor_ms=num("cursor_ms"),
        anchor_ms=num("anchor_ms"),
        last_tick_ms=num("last_tick_ms"),
        last_job_id=text("last_job_id"),
        create_ms=num("create_ms"),
        update_ms=num("update_ms"),
        version=num("version"),
    )


async def now_ms(store: Store) -> int:
    """The store's time: the test clock when set, else Redis TIME."""
    now = store._clock()
    if now is not None:
        return now
    seconds, micros = await store._read(lambda: store.client.time())
    return int(seconds) * 1000 + int(micros) // 1000


# -- the registry ------------------------------------------------------------------------


async def claim_name(store: Store, name: str, queue: str) -> str | None:
    """Registers `name` for `queue`; returns the queue it was registered for already
    (None when the name was free)."""
    key = schedule_registry_key(store.prefix)
    with unavailable_on_connection_errors():
        if await store.client.hsetnx(key, name, queue):
            return None
        found = await store.client.hget(key, name)
    return cast(bytes, found).decode() if found is not None else None


async def set_queue(store: Store, name: str, queue: str) -> None:
    with unavailable_on_connection_errors():
        await store.client.hset(schedule_registry_key(store.prefix), name, queue)


async def unregister(store: Store, name: str) -> None:
    with unavailable_on_connection_errors():
        await store.client.hdel(schedule_registry_key(store.prefix), name)


async def queue_of(store: Store, name: str) -> str | None:
    key = schedule_registry_key(store.prefix)
    found = cast(bytes | None, await store._read(lambda: store.client.hget(key, name)))
    return found.decode() if found is not None else None


async def registry(store: Store) -> dict[str, str]:
    """Every schedule's name -> queue, read SCAN_COUNT entries per call."""
    key, out, cursor = schedule_registry_key(store.prefix), {}, 0
    while True:
        page = cursor
        cursor, found = cast(
            tuple[int, dict[bytes, bytes]],
            await store._read(
                lambda: store.client.hscan(key, page, count=SCAN_COUNT)  # noqa: B023
            ),
        )
        out.update({k.decode(): v.decode() for k, v in found.items()})
        if cursor == 0:
            return out


async def registry_page(store: Store, cursor: int) -> tuple[int, dict[str, str]]:
    """One HSCAN page (about SCAN_COUNT entries) of the registry from `cursor`; returns
    the next cursor (0: the scan is complete) and the names -> queues it found."""
    key = schedule_registry_key(store.prefix)
    nxt, found = cast(
        tuple[int, dict[bytes, bytes]],
        await store._read(lambda: store.client.hscan(key, cursor, count=SCAN_COUNT)),
    )
    return int(nxt), {k.decode(): v.decode() for k, v in found.items()}


# -- records -----------------------------------------------------------------------------


async def get(store: Store, queue: str, name: str) -> ScheduleRecord | None:
    key = queue_key(store.prefix, queue, "schedule:" + name)
    raw = cast(dict[bytes, bytes], await store._read(lambda: store.client.hgetall(key)))
    return record(name, raw) if raw else None


async def get_many(store: Store, items: Sequence[tuple[str, str]]) -> list[ScheduleRecord]:
    """The records of (name, queue) pairs, in one round trip per SCAN_COUNT of them;
    those gone meanwhile are left out."""
    out: list[ScheduleRecord] = []
    for start in range(0, len(items), SCAN_COUNT):
        part = items[start : start + SCAN_COUNT]

        async def read(part: Sequence[tuple[str, str]] = part) -> list[Any]:
            async with store.client.pipeline(transaction=False) as pipe:
                for name, queue in part:
                    pipe.hgetall(queue_key(store.prefix, queue, "schedule:" + name))
                rows: list[Any] = await pipe.execute()
                return rows

        rows = await store._read(read)
        out += [record(n, raw) for (n, _), raw in zip(part, rows, strict=True) if raw]
    return out


async def put(
    store: Store,
    queue: str,
    name: str,
    create: bool,
    values: Mapping[str, bytes | str],
    due_ms: int,
    clear: Sequence[str] = (),
) -> bool:
    args = {
        "name": name,
        "create": create,
        "set": dict(values),
        "clear": list(clear),
        "due_ms": due_ms,
    }
    return bool((await store.run("schedule_put", queue, args))["done"])


async def delete(store: Store, queue: str, name: str) -> bool:
    return bool((await store.run("schedule_delete", queue, {"name": name}))["found"])


async def due(store: Store, queue: str, now: int, limit: int) -> list[str]:
    key = queue_key(store.prefix, queue, "schedules")
    names = cast(
        list[bytes],
        await store._read(lambda: store.client.zrangebyscore(key, "-inf", now, start=0, num=limit)),
    )
    return [n.decode() for n in names]


async def fire(
    store: Store,
    rec: ScheduleRecord,
    ticks: Sequence[tuple[int, NewJob]],
    new_cursor_ms: int,
    next_due_ms: int,
) -> FireResult:
    """Claims the ticks (and the cursor move) and enqueues their jobs: schedule_fire.lua."""
    queue = rec.spec.queue
    await store.register(queue)
    args = {
        "name": rec.spec.name,
        "version": rec.version,
        "cursor_ms": rec.cursor_ms,
        "new_cursor_ms": new_cursor_ms,
        "next_due_ms": next_due_ms,
        "skip_overlap": rec.spec.overlap is Overlap.SKIP,
        "ticks": [t for t, _ in ticks],
        "last_tick_ms": ticks[-1][0] if ticks else 0,
        "queue": queue,
        "defaults": store._defaults,
        "jobs": [
            {
                "spec": schema.spec(job),
                "delay_ms": job.delay_ms,
                "run_at_ms": job.run_at_ms,
                "idempotency_window_ms": job.idempotency_window_ms,
                "idempotency_mode": job.idempotency_mode.value,
            }
            for _, job in ticks
        ],
    }
    r = await store.run("schedule_fire", queue, args)
    fired = [Fired(int(f["tick_ms"]), int(f["seq"])) for f in r["fired"]]
    return FireResult(bool(r["claimed"]), fired, int(r["skipped"]))
