"""Typed async API over the Lua scripts: one script call, one round trip, per transition."""

import contextlib
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from .keys import QueueKeys, events_key, job_key, queue_keys, registry_key, set_key
from .records import (
    Backoff,
    CancelResult,
    CompleteItem,
    Enqueued,
    Event,
    FailItem,
    FailResult,
    HeartbeatItem,
    HeartbeatResult,
    ItemResult,
    JobError,
    JobRecord,
    JobState,
    LeaseBatch,
    NewJob,
    Progress,
    Reclaimed,
    Retention,
    TooLarge,
    TraceContext,
)
from .scripts import Code, load_scripts

Clock = Callable[[], int | None]
T = TypeVar("T")
# What a Lease reply may carry unless the caller says more: gRPC's default receive
# limit in every language, so a client with default settings can always read it.
DEFAULT_REPLY_BYTES = 4 << 20
CONNECTION_ERRORS = (ConnectionError, TimeoutError, BusyLoadingError, OSError)


class StoreUnavailable(Exception):
    """Redis could not be reached, or is still loading its data."""


@contextlib.contextmanager
def unavailable_on_connection_errors() -> Iterator[None]:
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc


REGISTRY_REFRESH_S = 60.0


def _redis_time() -> int | None:
    """The default clock: None tells scripts to read Redis TIME."""
    return None


class Store:
    """Jobs in Redis. Every state change is one Lua script; reads are plain commands."""

    def __init__(self, client: Redis, prefix: str = "jw", clock: Clock = _redis_time) -> None:
        self.client = client
        self.prefix = prefix
        self._clock = clock
        self._scripts = load_scripts(client)
        self._registered: set[str] = set()
        self._registered_at = 0.0

    async def _run(self, script: str, queue: str, args: Sequence[Any]) -> Any:
        keys = queue_keys(self.prefix, queue)
        now = self._clock()
        head = ("" if now is None else now, keys.wake_channel, keys.events_channel)
        with unavailable_on_connection_errors():
            return await self._scripts[script](keys=keys.keys, args=[*head, *args])

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

    async def queues(self) -> list[str]:
        members = cast(
            set[bytes], await self._read(lambda: self.client.smembers(registry_key(self.prefix)))
        )
        return sorted(m.decode() for m in members)

    async def enqueue(self, queue: str, jobs: Sequence[NewJob]) -> list[Enqueued]:
        await self.register(queue)
        args: list[Any] = [queue, len(jobs)]
        for job in jobs:
            args += [
                job.payload,
                job.content_type,
                json.dumps(dict(job.headers), separators=(",", ":")),
                job.priority,
                job.delay_ms,
                job.run_at_ms,
                job.max_attempts,
                job.backoff.spec(),
                job.lease_ms,
                job.timeout_ms,
                job.idempotency_key,
                job.idempotency_window_ms,
                _trace_json(job.trace),
            ]
        rows = await self._run("enqueue", queue, args)
        return [Enqueued(int(seq), bool(dup), JobState(state.decode())) for seq, dup, state in rows]

    # -- workers --------------------------------------------------------------------

    async def lease(
        self,
        queue: str,
        max_jobs: int,
        waiting_flag_ms: int = 0,
        max_bytes: int = DEFAULT_REPLY_BYTES,
    ) -> LeaseBatch:
        """Leases up to max_jobs, no more than fit in max_bytes of reply (lease.lua's
        estimate). With none ready, sets the queue's waiting flag for waiting_flag_ms so
        the next Enqueue publishes a wake-up."""
        token_prefix = secrets.token_hex(12) + "."
        args = [max_jobs, token_prefix, waiting_flag_ms, max_bytes]
        out = await self._run("lease", queue, args)
        next_due, too_large_seq, too_large_bytes = (int(v) for v in out[:3])
        return LeaseBatch(
            jobs=[_record(queue, _pairs(flat)) for flat in out[3:]],
            next_due_in_ms=None if next_due < 0 else next_due,
            too_large=TooLarge(too_large_seq, too_large_bytes) if too_large_seq else None,
        )

    async def release(self, queue: str, jobs: Sequence[JobRecord]) -> list[FailResult]:
        """Hands leased jobs back at once, their attempts not counted against
        max_attempts: for leases nobody will ever hold (a reply that was not delivered)."""
        return await self.fail(
            queue, [FailItem(j.seq, j.token, JobError(""), release=True) for j in jobs]
        )

    async def heartbeat(self, queue: str, items: Sequence[HeartbeatItem]) -> list[HeartbeatResult]:
        args: list[Any] = [len(items)]
        for item in items:
            p = item.progress
            args += [
                item.seq,
                item.token,
                item.extension_ms,
                0 if p is None else 1,
                "" if p is None else _percent(p.percent),
                "" if p is None else p.message,
                "" if p is None else p.details_json,
            ]
        rows = await self._run("heartbeat", queue, args)
        return [
            HeartbeatResult(int(code), reason.decode(), int(until), bool(cancel))
            for code, reason, until, cancel in rows
        ]

    async def complete(self, queue: str, items: Sequence[CompleteItem]) -> list[ItemResult]:
        args: list[Any] = [len(items)]
        for item in items:
            args += [item.seq, item.token, item.result, item.content_type]
        rows = await self._run("complete", queue, args)
        return [
            ItemResult(int(code), reason.decode(), _trace(trace)) for code, reason, trace in rows
        ]

    async def fail(self, queue: str, items: Sequence[FailItem]) -> list[FailResult]:
        args: list[Any] = [len(items)]
        for item in items:
            err = item.error
            args += [
                item.seq,
                item.token,
                err.type,
                err.message,
                int(err.non_retryable),
                item.retry_delay_ms,
                random.random(),
                int(item.release),
            ]
        rows = await self._run("fail", queue, args)
        return [
            FailResult(
                int(code),
                reason.decode(),
                JobState(state.decode()) if state else None,
                int(due),
                _trace(trace),
            )
            for code, reason, state, due, trace in rows
        ]

    # -- anyone ---------------------------------------------------------------------

    async def get(self, queue: str, seq: int) -> JobRecord | None:
        key = job_key(self.prefix, queue, seq)
        fields = cast(dict[bytes, bytes], await self._read(lambda: self.client.hgetall(key)))
        return _record(queue, fields) if fields else None

    async def cancel(self, queue: str, seq: int) -> CancelResult:
        code, state = await self._run("cancel", queue, [seq])
        return CancelResult(int(code), JobState(state.decode()) if state else None)

    async def watch(self, queue: str, seq: int) -> tuple[JobRecord, str] | None:
        """Marks the job watched; returns it with the id of its latest event."""
        code, last_id, flat = await self._run("watch", queue, [seq])
        if code != Code.OK:
            return None
        return _record(queue, _pairs(flat)), last_id.decode()

    async def events_after(self, queue: str, seq: int, after_id: str, count: int) -> list[Event]:
        key = events_key(self.prefix, queue, seq)
        rows = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._read(
                lambda: self.client.xrange(key, min=f"({after_id}", max="+", count=count)
            ),
        )
        return [_event(entry_id.decode(), fields) for entry_id, fields in rows]

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

    async def reclaim(self, queue: str, limit: int = 1000) -> list[Reclaimed]:
        rows = await self._run("reclaim", queue, [limit, random.random()])
        return [
            Reclaimed(int(seq), STATES[state], etype.decode(), int(attempt), _trace(trace))
            for seq, state, etype, attempt, trace in rows
        ]

    async def promote(self, queue: str, limit: int = 1000) -> int:
        return int(await self._run("promote", queue, [limit]))

    async def prune(self, queue: str, retention: Retention, limit: int = 1000) -> int:
        r = retention
        args = [r.completed_age_ms, r.completed_count, r.dead_age_ms, r.dead_count, limit]
        return int(await self._run("prune", queue, args))


def _percent(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _trace_json(trace: TraceContext) -> str:
    if not (trace.traceparent or trace.tracestate or trace.baggage):
        return ""
    return json.dumps(
        {
            "traceparent": trace.traceparent,
            "tracestate": trace.tracestate,
            "baggage": trace.baggage,
        },
        separators=(",", ":"),
    )


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _str(h: dict[bytes, bytes], name: bytes) -> str:
    return h.get(name, b"").decode()


def _int(h: dict[bytes, bytes], name: bytes) -> int:
    return int(h.get(name) or 0)


STATES = {state.value.encode(): state for state in JobState}
NO_TRACE = TraceContext()


@lru_cache(maxsize=256)
def _backoff(spec: bytes) -> Backoff:
    return Backoff.parse(spec.decode())


def _trace(raw: bytes | None) -> TraceContext:
    return TraceContext(**json.loads(raw)) if raw else NO_TRACE


def _json_map(raw: bytes | None) -> dict[str, str]:
    return json.loads(raw) if raw and raw != b"{}" else {}


def _record(queue: str, h: dict[bytes, bytes]) -> JobRecord:
    """A job from its hash. Runs once per leased job, so it skips work for empty fields."""
    pct = h.get(b"pct")
    etype = h.get(b"etype")
    return JobRecord(
        queue=queue,
        seq=int(h[b"id"].rsplit(b":", 1)[1]),
        state=STATES[h[b"state"]],
        payload=h.get(b"payload", b""),
        content_type=_str(h, b"ctype"),
        headers=_json_map(h.get(b"headers")),
        priority=_int(h, b"prio"),
        max_attempts=_int(h, b"max_att"),
        backoff=_backoff(h[b"backoff"]),
        lease_ms=_int(h, b"lease_ms"),
        timeout_ms=_int(h, b"exec_ms"),
        idempotency_key=_str(h, b"idem"),
        trace=_trace(h.get(b"trace")),
        attempt=_int(h, b"att"),
        counted_attempts=_int(h, b"att") - _int(h, b"rel"),
        token=_str(h, b"token"),
        lease_until_ms=_int(h, b"lease_until"),
        created_ms=_int(h, b"created"),
        run_at_ms=_int(h, b"run_at"),
        started_ms=_int(h, b"started"),
        finished_ms=_int(h, b"finished"),
        progress=None if pct is None else Progress(float(pct), _str(h, b"pmsg"), _str(h, b"pdet")),
        result=h.get(b"result", b""),
        result_content_type=_str(h, b"rctype"),
        error=None
        if etype is None
        else JobError(etype.decode(), _str(h, b"emsg"), h.get(b"enr") == b"1"),
        cancel_requested=h.get(b"cancel") == b"1",
    )


def _event(entry_id: str, raw: dict[bytes, bytes]) -> Event:
    h = raw
    progress = None
    if b"pp" in h:
        progress = Progress(float(h[b"pp"]), _str(h, b"pm"), _str(h, b"pd"))
    error = JobError(_str(h, b"et"), _str(h, b"em")) if b"et" in h else None
    return Event(
        id=entry_id,
        time_ms=int(entry_id.split("-")[0]),
        kind=_str(h, b"k"),
        state=JobState(_str(h, b"s")),
        attempt=_int(h, b"a"),
        progress=progress,
        error=error,
    )
