"""The worker registry: who leased from which queue in the last hour, what each holds,
and the state that follows from what the broker last saw of it (ListWorkers)."""

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..store import Store
from ..store.workers import WorkerRecord, now_ms, prune_workers, records, seen_since
from .admin import AdminContext
from .broker import store_errors

HOUR_MS = 3_600_000
SEEN_WINDOW_MS = HOUR_MS  # workers not seen for this long are not listed (then pruned)
GONE_AFTER_MS = 60_000  # a worker that holds nothing and is not seen this long is gone
MAX_WORKERS_PER_QUEUE = 10_000  # read per queue, most recently seen first


class WorkerState(StrEnum):
    ACTIVE = "active"  # holds leases
    IDLE = "idle"  # holds none, seen within GONE_AFTER_MS
    GONE = "gone"  # silent for GONE_AFTER_MS, or its leases expired and it has not called since


@dataclass(frozen=True, slots=True)
class Worker:
    """A worker across every queue it was seen on (times in ms, 0 when never)."""

    worker_id: str
    queues: tuple[str, ...]
    in_flight: int
    last_lease_ms: int
    last_heartbeat_ms: int
    expired_ms: int
    state: WorkerState

    @property
    def last_seen_ms(self) -> int:
        return max(self.last_lease_ms, self.last_heartbeat_ms)


def state_of(in_flight: int, last_seen_ms: int, expired_ms: int, now_ms: int) -> WorkerState:
    """A lease held makes a worker active, however long since its last call: its job may
    run for long between heartbeats. Holding none, it is gone once silent for a minute,
    or at once when its last leases ran out (the broker took them back) and it has not
    called since: a crashed worker is shown gone as soon as its leases expire."""
    if in_flight > 0:
        return WorkerState.ACTIVE
    if now_ms - last_seen_ms >= GONE_AFTER_MS or (expired_ms and expired_ms >= last_seen_ms):
        return WorkerState.GONE
    return WorkerState.IDLE


def merge(found: Iterable[WorkerRecord], now_ms: int) -> list[Worker]:
    """One Worker per id from its records on each queue: in-flight summed, latest times."""
    by_id: dict[str, list[WorkerRecord]] = {}
    for record in found:
        by_id.setdefault(record.worker_id, []).append(record)
    out = []
    for worker_id in sorted(by_id):
        rs = by_id[worker_id]
        in_flight = sum(max(r.in_flight, 0) for r in rs)
        lease = max(r.last_lease_ms for r in rs)
        beat = max(r.last_heartbeat_ms for r in rs)
        expired = max(r.expired_ms for r in rs)
        out.append(
            Worker(
                worker_id=worker_id,
                queues=tuple(sorted(r.queue for r in rs)),
                in_flight=in_flight,
                last_lease_ms=lease,
                last_heartbeat_ms=beat,
                expired_ms=expired,
                state=state_of(in_flight, max(lease, beat), expired, now_ms),
            )
        )
    return out


@store_errors
async def list_workers(
    ctx: AdminContext, queue: str = "", include_gone: bool = False
) -> list[Worker]:
    """The workers seen in the last hour, by id; with `queue`, only those seen on it,
    each still described across all its queues (its state is the worker's, not the
    queue's). QUEUE_NOT_FOUND for an unknown queue."""
    if queue:
        await ctx.require_queue(queue)
    store = ctx.store
    now = await now_ms(store)
    seen = await seen_since(
        store, await store.queues(), now - SEEN_WINDOW_MS, MAX_WORKERS_PER_QUEUE
    )
    wanted = set(seen.get(queue, ())) if queue else None
    pairs = [
        (q, worker_id)
        for q, ids in seen.items()
        for worker_id in ids
        if wanted is None or worker_id in wanted
    ]
    workers = merge(await records(store, pairs), now)
    if wanted is not None:
        workers = [w for w in workers if queue in w.queues]
    if not include_gone:
        workers = [w for w in workers if w.state is not WorkerState.GONE]
    return workers


async def forget_old_workers(store: Store, queue: str) -> int:
    """Maintenance: drops the records of a queue's workers not seen for SEEN_WINDOW_MS
    (they are no longer listed anyway), so the registry does not grow without bound."""
    return await prune_workers(store, queue, SEEN_WINDOW_MS)
