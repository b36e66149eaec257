"""The worker registry as lease.lua, heartbeat.lua and lib.lua's worker_done keep it:
per queue, zset `workers` (worker id -> last seen, ms) and one hash `worker:<id>` of
schema.WORKER_FIELDS. Reads here are bounded; forgetting old workers is a script."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from . import schema
from .keys import queue_key
from .store import Store

READ_CHUNK = 1_000  # HGETALLs per pipeline round trip


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """One worker's record on one queue, as stored (times in ms, 0 when never); its
    fields after the first two are schema.WORKER_FIELDS."""

    queue: str
    worker_id: str
    last_lease_ms: int = 0
    last_heartbeat_ms: int = 0
    in_flight: int = 0
    expired_ms: int = 0


async def now_ms(store: Store) -> int:
    """The store's clock: Redis TIME, unless a test set the store's clock."""
    now = store._clock()
    if now is not None:
        return now
    seconds, micros = cast(tuple[int, int], await store._read(store.client.time))
    return seconds * 1_000 + micros // 1_000


async def seen_since(
    store: Store, queues: Sequence[str], since_ms: int, limit: int
) -> dict[str, list[str]]:
    """Per queue, the ids of workers seen at `since_ms` or later: the `limit` seen most
    recently, in one round trip."""

    async def read() -> list[list[bytes]]:
        async with store.client.pipeline(transaction=False) as pipe:
            for queue in queues:
                key = queue_key(store.prefix, queue, "workers")
                pipe.zrevrangebyscore(key, "+inf", since_ms, start=0, num=limit)
            return cast(list[list[bytes]], await pipe.execute())

    if not queues:
        return {}
    found = await store._read(read)
    return {q: [m.decode() for m in ids] for q, ids in zip(queues, found, strict=True)}


async def records(store: Store, wanted: Sequence[tuple[str, str]]) -> list[WorkerRecord]:
    """The records of (queue, worker id) pairs; a pair whose record is gone is left out."""
    out: list[WorkerRecord] = []
    for start in range(0, len(wanted), READ_CHUNK):
        chunk = wanted[start : start + READ_CHUNK]

        async def read(chunk: Sequence[tuple[str, str]] = chunk) -> list[dict[bytes, bytes]]:
            async with store.client.pipeline(transaction=False) as pipe:
                for queue, worker_id in chunk:
                    pipe.hgetall(queue_key(store.prefix, queue, "worker:" + worker_id))
                return cast(list[dict[bytes, bytes]], await pipe.execute())

        for (queue, worker_id), raw in zip(chunk, await store._read(read), strict=True):
            if raw:
                out.append(WorkerRecord(queue, worker_id, **_fields(raw)))
    return out


def _fields(raw: dict[bytes, bytes]) -> dict[str, Any]:
    return {name: int(value) for name in schema.WORKER_FIELDS if (value := raw.get(name.encode()))}


async def prune_workers(store: Store, queue: str, max_age_ms: int, limit: int = 1_000) -> int:
    """Forgets up to `limit` workers of a queue not seen for longer than `max_age_ms`
    (prune_workers.lua). Returns how many."""
    out = await store.run("prune_workers", queue, {"max_age_ms": max_age_ms, "limit": limit})
    return int(out["deleted"])
