"""Typed async API over the Lua scripts: one script call, one round trip, per transition.
Arguments go to a script as one MessagePack value of named fields, and its answer comes
back the same way; this module is the one place that packs and unpacks them."""

import contextlib
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import msgpack
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from ..domain.fingerprint import fingerprint
from ..domain.limits import DEFAULT_REPLY_BYTES, Defaults
from ..domain.model import (
    CancelResult,
    CompleteItem,
    Enqueued,
    Event,
    FailItem,
    FailResult,
    HeartbeatItem,
    HeartbeatResult,
    IdempotencyMode,
    ItemResult,
    JobRecord,
    JobState,
    LeaseBatch,
    NewJob,
    Reclaimed,
    ReleaseItem,
    Retention,
    TooLarge,
    TraceContext,
)
from . import schema
from .batches import JOBS_PER_CALL, chunks
from .keys import (
    QueueKeys,
    events_key,
    job_key,
    queue_keys,
    registry_channel,
    registry_key,
    set_key,
)
from .scripts import Code, load_scripts

Clock = Callable[[], int | None]
T = TypeVar("T")
Row = dict[str, Any]
CONNECTION_ERRORS = (ConnectionError, TimeoutError, BusyLoadingError, OSError)
REGISTRY_REFRESH_S = 60.0
LEASE_IDLE_CALLS = 4


class _LeaseCall(NamedTuple):
    """One lease.lua call: its jobs, whether it leased all it was asked for (more may be
    ready), and what is left of the reply's byte budget."""

    batch: LeaseBatch
    full: bool
    bytes_left: int

    @property
    def jobs(self) -> list[JobRecord]:
        return self.batch.jobs


class StoreUnavailable(Exception):
    """Redis could not be reached, or is still loading its data."""


class DeadlineRefused(Exception):
    """An Enqueue wrote nothing: start deadlines that are past, or before their job's
    run time, by the store's clock. `refusals` are (job index, problem, now_ms,
    run_at_ms), problem 'past' or 'before_run_time'."""

    def __init__(self, refusals: list[tuple[int, str, int, int]]) -> None:
        super().__init__(refusals)
        self.refusals = refusals


def _refusal(r: Row) -> tuple[int, str, int, int]:
    return int(r["index"]) - 1, r["problem"].decode(), int(r["now"]), int(r["run_at_ms"])


@contextlib.contextmanager
def unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


def _redis_time() -> int | None:
    """The default clock: None tells scripts to read Redis TIME."""
    return None


def _pack(args: Any) -> bytes:
    # Strings as MessagePack str, bytes included: the scripts' cmsgpack has no bin type.
    return cast(bytes, msgpack.packb(args, use_bin_type=False))


def _unpack(raw: bytes) -> Any:
    """A script's answer, with map keys as str and every string value as bytes."""
    return msgpack.unpackb(raw, raw=True, object_hook=_str_keys, strict_map_key=False)


def _str_keys(row: dict[bytes, Any]) -> Row:
    return {k.decode(): v for k, v in row.items()}


class Store:
    """Jobs in Redis. Every state change is one Lua script; reads are plain commands."""

    def __init__(
        self,
        client: Redis,
        prefix: str = "jw",
        clock: Clock = _redis_time,
        defaults: Defaults | None = None,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock
        self._defaults = schema.defaults(defaults or Defaults())
        self._scripts = load_scripts(client)
        self._registered: set[str] = set()
        self._registered_at = 0.0

    async def run(self, script: str, queue: str, args: Any) -> Any:
        """Runs one script on a queue's keys: named arguments in, named results out."""
        return await self._run(script, queue, args)

    async def _run(self, script: str, queue: str, args: Any) -> Any:
        keys = queue_keys(self.prefix, queue)
        now = self._clock()
        head = ("" if now is None else now, keys.wake_channel, keys.events_channel)
        with unavailable_on_connection_errors():
            raw = await self._scripts[script](keys=keys.keys, args=[*head, _pack(args)])
        return _unpack(raw)

    async def _run_chunked(self, script: str, queue: str, items: list[Any]) -> list[Any]:
        """A script that takes a list of independent items, JOBS_PER_CALL per call: each
        item's outcome is its own, so splitting the list changes no answer."""
        rows: list[Any] = []
        for part in chunks(items):
            rows.extend(await self._run(script, queue, part))
        return rows

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """Runs a read (or SADD to the queue registry, which changes nothing when
        repeated), once more on a fresh connection after a connection error: doing it
        twice cannot take effect twice. Scripts are never retried, here or by redis-py
        (see connection.py): a Lease, or an Enqueue without an idempotency key, run twice
        would lease or create twice, and a settlement run twice would answer LEASE_LOST
        for work that was stored. Their callers get UNAVAILABLE and decide. Timeouts are
        not retried either: a server that did not answer in time is not back yet."""
        try:
            return await call()
        except ConnectionError:
            pass
        with unavailable_on_connection_errors():
            return await call()

    def keys(self, queue: str) -> QueueKeys:
        return queue_keys(self.prefix, queue)

    async def ping(self) -> None:
        with unavailable_on_connection_errors():
            await self.client.ping()

    # -- producers ------------------------------------------------------------------

    async def register(self, queue: str) -> None:
        """Adds the queue to the registry the maintenance loop reads (cached locally)."""
        if time.monotonic() - self._registered_at > REGISTRY_REFRESH_S:
            self._registered.clear()
            self._registered_at = time.monotonic()
        if queue not in self._registered:
            await self._read(lambda: self.client.sadd(registry_key(self.prefix), queue))
            self._registered.add(queue)

    async def queue_exists(self, queue: str) -> bool:
        key = registry_key(self.prefix)
        return bool(await self._read(lambda: self.client.sismember(key, queue)))

    async def unregister(self, queue: str) -> None:
        """Removes a deleted queue from the registry and tells every replica to forget
        that it registered it (so its next enqueue registers it again)."""
        self._registered.discard(queue)
        with unavailable_on_connection_errors():
            await self.client.srem(registry_key(self.prefix), queue)
            await self.client.publish(registry_channel(self.prefix), queue)

    def forget(self, queue: str) -> None:
        """Drops a queue from the local registration cache (another replica deleted it)."""
        self._registered.discard(queue)

    async def queues(self) -> list[str]:
        members = cast(
            set[bytes], await self._read(lambda: self.client.smembers(registry_key(self.prefix)))
        )
        return sorted(m.decode() for m in members)

    async def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        await self.register(queue)
        args = {
            "queue": queue,
            "defaults": self._defaults,
            "jobs": [
                {
                    "spec": schema.spec(job),
                    "delay_ms": job.delay_ms,
                    "run_at_ms": job.run_at_ms,
                    "idempotency_window_ms": job.idempotency_window_ms,
                    "idempotency_mode": job.idempotency_mode.value,
                }
                for job in jobs
            ],
        }
        if any(job.idempotency_mode is IdempotencyMode.REPLACE for job in jobs):
            args["spec_fields"] = list(schema.SPEC_STORED)
        rows = await self._run("enqueue", queue, args)
        if isinstance(rows, dict):
            raise DeadlineRefused([_refusal(r) for r in rows["invalid"]])
        return [Enqueued(r["seq"], r["duplicate"], _state(r["state"])) for r in rows]

    # -- workers --------------------------------------------------------------------

    async def lease(
        self,
        queue: str,
        max_jobs: int,
        waiting_flag_ms: int = 0,
        max_bytes: int = DEFAULT_REPLY_BYTES,
        worker_id: str = "",
    ) -> LeaseBatch:
        """Leases up to max_jobs, no more than fit in max_bytes of reply (lease.lua's
        estimate), JOBS_PER_CALL per script call. With none ready, sets the queue's
        waiting flag for waiting_flag_ms so the next Enqueue publishes a wake-up."""
        first = await self._lease_call(queue, max_jobs, waiting_flag_ms, max_bytes, worker_id)
        jobs, out, idle = list(first.jobs), first, 0
        # A call that only expired jobs leased nothing; a backlog of them is left to the
        # maintenance loop's sweep after a few such calls.
        while out.full and len(jobs) < max_jobs and out.bytes_left > 0 and idle < LEASE_IDLE_CALLS:
            # More may be ready: the next call neither sets the waiting flag nor reports
            # a job too large for what is left of the reply (this reply is not empty).
            try:
                out = await self._lease_call(
                    queue, max_jobs - len(jobs), 0, out.bytes_left, worker_id
                )
            except StoreUnavailable:
                break  # the jobs already leased go out: losing the reply would strand them
            jobs.extend(out.jobs)
            idle = 0 if out.jobs else idle + 1
        return LeaseBatch(
            jobs=jobs,
            next_due_in_ms=first.batch.next_due_in_ms,
            too_large=first.batch.too_large,
            paused=first.batch.paused,
        )

    async def _lease_call(
        self, queue: str, max_jobs: int, waiting_flag_ms: int, max_bytes: int, worker_id: str
    ) -> _LeaseCall:
        asked = min(max_jobs, JOBS_PER_CALL)
        out = await self._run(
            "lease",
            queue,
            {
                "max_jobs": asked,
                "token_prefix": secrets.token_hex(12) + ".",
                "waiting_flag_ms": waiting_flag_ms,
                "max_bytes": max_bytes,
                "worker_id": worker_id,
                "promote_limit": JOBS_PER_CALL,
            },
        )
        too_large = out.get("too_large")
        jobs = [schema.job(queue, _pairs(flat)) for flat in out["jobs"]]
        batch = LeaseBatch(
            jobs=jobs,
            next_due_in_ms=None if out["next_due_ms"] < 0 else out["next_due_ms"],
            too_large=TooLarge(too_large["seq"], too_large["bytes"]) if too_large else None,
            paused=bool(out.get("paused")),
        )
        # Jobs expired at their start deadline took places of the call, as leased ones do.
        moved = len(jobs) + int(out.get("expired", 0))
        return _LeaseCall(batch, moved == asked, int(out["bytes_left"]))

    async def heartbeat(self, queue: str, items: Sequence[HeartbeatItem]) -> list[HeartbeatResult]:
        args = [
            {
                "seq": item.seq,
                "token": item.token,
                "extension_ms": item.extension_ms,
                **({"progress": schema.members(item.progress)} if item.progress else {}),
            }
            for item in items
        ]
        rows = await self._run_chunked("heartbeat", queue, args)
        return [
            HeartbeatResult(
                Code(r["code"]).outcome,
                r["reason"].decode(),
                r["lease_until_ms"],
                r["cancel_requested"],
            )
            for r in rows
        ]

    async def complete(self, queue: str, items: Sequence[CompleteItem]) -> list[ItemResult]:
        args = [
            {
                "seq": item.seq,
                "token": item.token,
                "result": item.result,
                "result_content_type": item.content_type,
            }
            for item in items
        ]
        rows = await self._run_chunked("complete", queue, args)
        return [
            ItemResult(Code(r["code"]).outcome, r["reason"].decode(), _trace(r["trace"]))
            for r in rows
        ]

    async def fail(self, queue: str, items: Sequence[FailItem]) -> list[FailResult]:
        args = [
            {
                "seq": item.seq,
                "token": item.token,
                "error": {**schema.members(item.error), "template": item.template},
                "retry_delay_ms": item.retry_delay_ms,
                "rand": random.random(),
            }
            for item in items
        ]
        return _fail_results(await self._run_chunked("fail", queue, args))

    async def release(self, queue: str, items: Sequence[ReleaseItem]) -> list[FailResult]:
        """Hands leases back uncounted (release.lua)."""
        args = [{"seq": i.seq, "token": i.token, "delay_ms": i.delay_ms} for i in items]
        return _fail_results(await self._run_chunked("release", queue, args))

    # -- anyone ---------------------------------------------------------------------

    async def get(self, queue: str, seq: int) -> JobRecord | None:
        key = job_key(self.prefix, queue, seq)
        fields = cast(dict[bytes, bytes], await self._read(lambda: self.client.hgetall(key)))
        return schema.job(queue, fields) if fields else None

    async def cancel(self, queue: str, seq: int) -> CancelResult:
        r = await self._run("cancel", queue, {"seq": seq})
        return CancelResult(Code(r["code"]).outcome, _state(r["state"]) if r["state"] else None)

    async def watch(self, queue: str, seq: int) -> tuple[JobRecord, str] | None:
        """Marks the job watched; returns it with the id of its latest event."""
        r = await self._run("watch", queue, {"seq": seq})
        if r["code"] != Code.OK:
            return None
        return schema.job(queue, _pairs(r["job"])), r["last_event_id"].decode()

    async def events_after(self, queue: str, seq: int, after_id: str, count: int) -> list[Event]:
        key = events_key(self.prefix, queue, seq)
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._read(
                lambda: self.client.xrange(key, min=f"({after_id}", max="+", count=count)
            ),
        )
        return [schema.event(entry_id.decode(), fields) for entry_id, fields in rows]

    async def depths(self, states: Sequence[JobState]) -> dict[str, dict[JobState, int]]:
        """How many jobs each known queue holds in each of `states`, in one round trip
        after reading the registry. Not atomic across queues: a gauge, not a ledger."""
        queues = await self.queues()
        if not queues:
            return {}

        async def count() -> list[int]:
            async with self.client.pipeline(transaction=False) as pipe:
                for queue in queues:
                    for state in states:
                        pipe.zcard(set_key(self.prefix, queue, state.value))
                return cast(list[int], await pipe.execute())

        counts = iter(await self._read(count))
        return {queue: {state: int(next(counts)) for state in states} for queue in queues}

    # -- maintenance ----------------------------------------------------------------

    async def reclaim(self, queue: str, limit: int = JOBS_PER_CALL) -> list[Reclaimed]:
        args = {"limit": limit, "rand": random.random(), "errors": RECLAIM_ERRORS}
        rows = await self._run("reclaim", queue, args)
        return [
            Reclaimed(
                r["seq"],
                _state(r["state"]),
                r["error_type"].decode(),
                r["attempt"],
                _trace(r["trace"]),
            )
            for r in rows
        ]

    async def expire(self, queue: str, limit: int = JOBS_PER_CALL) -> tuple[int, int]:
        """Expires pending jobs past their start deadline (expire.lua): how many, and
        how many deadline entries were looked at (fewer than `limit`: none is left)."""
        r = await self._run("expire", queue, {"limit": limit})
        return int(r["expired"]), int(r["examined"])

    async def promote(self, queue: str, limit: int = JOBS_PER_CALL) -> int:
        return int((await self._run("promote", queue, {"limit": limit}))["moved"])

    async def prune(self, queue: str, retention: Retention, limit: int = JOBS_PER_CALL) -> int:
        r = retention
        args = {
            "completed_age_ms": r.completed_age_ms,
            "completed_count": r.completed_count,
            "dead_age_ms": r.dead_age_ms,
            "dead_count": r.dead_count,
            "limit": limit,
        }
        return int((await self._run("prune", queue, args))["deleted"])


def _fail_results(rows: list[Row]) -> list[FailResult]:
    return [
        FailResult(
            Code(r["code"]).outcome,
            r["reason"].decode(),
            _state(r["state"]) if r["state"] else None,
            r["due_ms"],
            _trace(r["trace"]),
        )
        for r in rows
    ]


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _state(raw: bytes) -> JobState:
    return schema.STATES[raw]


def _trace(members: Any) -> TraceContext:
    """The trace context a script returned; a list when empty (cmsgpack packs an empty
    table as an array)."""
    return schema.trace(members) if members else NO_TRACE


NO_TRACE = TraceContext()
# The errors reclaim.lua records, with their fingerprints.
RECLAIM_ERRORS = {
    error_type: dict(
        zip(
            ("message", "fingerprint", "template"),
            (message, *fingerprint(error_type, message)),
            strict=True,
        )
    )
    for error_type, message in (
        ("LEASE_EXPIRED", "lease expired without a heartbeat"),
        ("EXECUTION_TIMEOUT", "attempt ran past its execution timeout"),
    )
}
