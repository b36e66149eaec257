"""A queue's settings, counts and throughput, and the scripts that steer a queue (pause,
resume, update, drain, delete). Settings live in the queue's `settings` hash under the
stored names of model.QueueSettings' fields (a record flattened as `backoff.kind`...),
which are the job fields enqueue.lua fills from them."""

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..domain.model import (
    RATE_LIMIT_SETTINGS,
    Backoff,
    BackoffKind,
    JobState,
    QueueInfo,
    QueueMinute,
    QueueSettings,
    RateLimit,
)
from . import schema
from .batches import JOBS_PER_CALL
from .keys import queue_key, state_set
from .store import Store

STATS_BUCKET_MS = 10_000  # lib.lua STATS_BUCKET_MS
PENDING = (JobState.READY.value, JobState.SCHEDULED.value)
ALL_STATES = tuple(s.value for s in JobState)
_BACKOFF_MEMBERS = tuple(f.name for f in dataclasses.fields(Backoff))
_RATE_MEMBERS = tuple(f.name for f in dataclasses.fields(RateLimit))


def stored(settings: QueueSettings) -> dict[str, bytes | str]:
    """The settings hash fields of the fields set in `settings`."""
    out: dict[str, bytes | str] = {}
    for f in dataclasses.fields(settings):
        out.update(schema.flat(f.name, getattr(settings, f.name)))
    return out


def stored_names(field: str) -> list[str]:
    """The hash fields that hold one QueueSettings field."""
    if field == "backoff":
        return [f"backoff.{m}" for m in _BACKOFF_MEMBERS]
    if field in RATE_LIMIT_SETTINGS:
        return [f"{field}.{m}" for m in _RATE_MEMBERS]
    return [field]


def _settings(raw: dict[bytes, bytes]) -> QueueSettings:
    text = {k.decode(): v.decode() for k, v in raw.items()}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(QueueSettings):
        if f.name == "backoff":
            if "backoff.kind" in text:
                b = {m: text.get(f"backoff.{m}", "0") for m in _BACKOFF_MEMBERS}
                values["backoff"] = Backoff(
                    BackoffKind(int(b["kind"])),
                    int(b["initial_ms"]),
                    int(b["max_ms"]),
                    float(b["multiplier"]),
                    float(b["jitter"]),
                )
        elif f.name in RATE_LIMIT_SETTINGS:
            if f"{f.name}.limit" in text:
                values[f.name] = RateLimit(
                    int(text[f"{f.name}.limit"]), int(text.get(f"{f.name}.period_ms", "0"))
                )
        elif f.name in text:
            values[f.name] = int(text[f.name])
    return QueueSettings(**values)


async def update(store: Store, queue: str, set_: QueueSettings, clear: Sequence[str]) -> None:
    names = [n for field in clear for n in stored_names(field)]
    await store.register(queue)
    await store.run("update_queue", queue, {"set": stored(set_), "clear": names})


async def set_paused(store: Store, queue: str, paused: bool) -> bool:
    return bool((await store.run("pause_queue", queue, {"paused": paused}))["changed"])


async def delete_jobs(store: Store, queue: str, states: Sequence[str]) -> int:
    """Deletes every job in `states`, JOBS_PER_CALL per script call."""
    deleted, _ = await _drain(store, queue, {"states": list(states), "all_keys": False})
    return deleted


async def delete_queue(store: Store, queue: str, force: bool) -> tuple[int, int]:
    """Deletes every job, then the queue's other keys, JOBS_PER_CALL per script call.
    Without force, each call first checks that no job is active, and the first pauses
    the queue so none is leased meanwhile; at an active job it stops and undoes that
    pause. Returns the jobs deleted and the active jobs it stopped at (0: the queue is
    gone)."""
    args = {"states": list(ALL_STATES), "all_keys": True, "idle": not force}
    return await _drain(store, queue, args)


async def _drain(store: Store, queue: str, args: dict[str, Any]) -> tuple[int, int]:
    total, args = 0, {**args, "limit": JOBS_PER_CALL}
    while True:
        r = await store.run("drain_queue", queue, args)
        total += int(r["deleted"])
        if r.get("active") or r["done"]:
            return total, int(r.get("active") or 0)
        if "was_paused" in r:
            args["was_paused"] = r["was_paused"]


async def info(store: Store, queue: str, minutes: int) -> QueueInfo:
    """Counts, paused flag, settings, oldest ready job and throughput; `minutes` of
    per-minute history (0 for none)."""
    heads = await store.run("ready_heads", queue, {})
    now, oldest = int(heads["now"]), int(heads["oldest"])
    bucket = now // STATS_BUCKET_MS
    buckets = max(6, minutes * 6)

    async def read() -> list[Any]:
        async with store.client.pipeline(transaction=False) as pipe:
            for state in ALL_STATES:
                pipe.zcard(queue_key(store.prefix, queue, state_set(state)))
            pipe.exists(queue_key(store.prefix, queue, "paused"))
            pipe.hgetall(queue_key(store.prefix, queue, "settings"))
            for b in range(bucket - buckets + 1, bucket + 1):
                pipe.hgetall(queue_key(store.prefix, queue, f"stats:{b}"))
            result: list[Any] = await pipe.execute()
            return result

    rows = await store._read(read)
    counts = {JobState(s): int(n) for s, n in zip(ALL_STATES, rows, strict=False)}
    paused, raw_settings = bool(rows[len(ALL_STATES)]), rows[len(ALL_STATES) + 1]
    stats = [_counts(r) for r in rows[len(ALL_STATES) + 2 :]]
    first = bucket - buckets + 1
    history = []
    if minutes:
        start_bucket = bucket - minutes * 6 + 1
        for m in range(minutes):
            chunk = stats[start_bucket - first + m * 6 : start_bucket - first + m * 6 + 6]
            history.append(
                QueueMinute(
                    (start_bucket + m * 6) * STATS_BUCKET_MS,
                    sum(c.get("completed", 0) for c in chunk),
                    sum(c.get("failed", 0) for c in chunk),
                    sum(c.get("dead", 0) for c in chunk),
                )
            )
    last = stats[-6:]
    return QueueInfo(
        name=queue,
        paused=paused,
        settings=_settings(raw_settings),
        counts=counts,
        oldest_ready_age_ms=None if oldest < 0 else max(0, now - oldest),
        completed_last_minute=sum(c.get("completed", 0) for c in last),
        failed_last_minute=sum(c.get("failed", 0) for c in last),
        last_hour=history,
    )


def _counts(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}
