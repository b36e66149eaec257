"""Queues as operators see them: settings with the broker's defaults, counts, pause,
drain and delete (store/queues.py runs the scripts)."""

import dataclasses
from collections.abc import Sequence

from ..store import queues as store_queues
from .admin import AdminContext
from .broker import store_errors
from .errors import queue_busy
from .model import RATE_LIMIT_SETTINGS, Backoff, BackoffKind, QueueInfo, QueueSettings
from .workers import list_workers

DEFAULT_EVENT_HISTORY = 10_000  # lib.lua DEFAULT_EVENT_HISTORY (a test holds them equal)
HISTORY_MINUTES = 60


def effective(ctx: AdminContext, s: QueueSettings) -> QueueSettings:
    """Every setting, the broker's default where the queue has none."""
    d, r = ctx.defaults, ctx.retention
    backoff = Backoff(
        BackoffKind.EXPONENTIAL, d.backoff_initial_ms, d.backoff_max_ms, d.backoff_multiplier
    )
    broker = QueueSettings(
        max_attempts=d.max_attempts,
        backoff=backoff,
        lease_ms=d.lease_ms,
        timeout_ms=None,  # no execution timeout: the field stays unset
        priority=0,
        keep_completed=r.completed_count,
        completed_max_age_ms=r.completed_age_ms,
        keep_dead=r.dead_count,
        dead_max_age_ms=r.dead_age_ms,
        event_history=DEFAULT_EVENT_HISTORY,
        concurrency_limit=1,  # enqueue.lua's default; no rate limits
    )
    own = {k: v for k, v in dataclasses.asdict(s).items() if v is not None}
    if s.backoff is not None:
        own["backoff"] = s.backoff
    for name in RATE_LIMIT_SETTINGS:  # records: asdict made them dicts
        if getattr(s, name) is not None:
            own[name] = getattr(s, name)
    return dataclasses.replace(broker, **own)


@store_errors
async def get_queue(ctx: AdminContext, queue: str, history: bool = True) -> QueueInfo:
    await ctx.require_queue(queue)
    found = await store_queues.info(ctx.store, queue, HISTORY_MINUTES if history else 0)
    workers = tuple(w.worker_id for w in await list_workers(ctx, queue))
    return dataclasses.replace(found, workers=workers)


@store_errors
async def list_queues(ctx: AdminContext) -> list[QueueInfo]:
    out = []
    for queue in await ctx.store.queues():
        found = await store_queues.info(ctx.store, queue, 0)
        workers = tuple(w.worker_id for w in await list_workers(ctx, queue))
        out.append(dataclasses.replace(found, workers=workers))
    return out


@store_errors
async def update_queue(
    ctx: AdminContext, queue: str, values: QueueSettings, fields: Sequence[str]
) -> QueueInfo:
    """Sets `fields` to their values in `values`; those None there go back to defaults.
    Creates the queue if new."""
    chosen = {f: getattr(values, f) for f in fields if getattr(values, f) is not None}
    clear = [f for f in fields if getattr(values, f) is None]
    await store_queues.update(ctx.store, queue, QueueSettings(**chosen), clear)
    return await get_queue(ctx, queue)


@store_errors
async def set_paused(ctx: AdminContext, queue: str, paused: bool) -> None:
    await ctx.require_queue(queue)
    await store_queues.set_paused(ctx.store, queue, paused)


@store_errors
async def drain_queue(ctx: AdminContext, queue: str) -> int:
    await ctx.require_queue(queue)
    return await store_queues.delete_jobs(ctx.store, queue, store_queues.PENDING)


@store_errors
async def delete_queue(ctx: AdminContext, queue: str, force: bool) -> int:
    """Without force, refused (QUEUE_BUSY) once any job is active, checked atomically in
    every batch: a job leased after one batch is never deleted by the next."""
    await ctx.require_queue(queue)
    deleted, active = await store_queues.delete_queue(ctx.store, queue, force)
    if active:
        raise queue_busy(queue, active)
    await ctx.store.unregister(queue)
    return deleted
