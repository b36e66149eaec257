"""Typed async API over the Lua scripts: one script call, one round trip, per transition.
Arguments go to a script as one MessagePack value of named fields, and its answer comes
back the same way; this module is the one place that packs and unpacks them."""

import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import msgpack
from redis.asyncio import Redis
from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

from ..domain.fingerprint import fingerprint
from ..domain.jitter import JITTER
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
    KEY_NAMES,
    QueueKeys,
    events_key,
    job_key,
    queue_keys,
    registry_channel,
    registry_key,
    set_key,
    state_set,
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


class UnknownDependency(Exception):
    """An enqueue named a dependency that does not exist: nothing was written. Its
    argument is the request field that named it."""


# The most other queues whose keys one script call receives for dependants across
# queues; dependants in further queues are left to the maintenance loop (resolve.lua).
MAX_OTHER_QUEUES = 16
# The error of a dependant whose dependency failed, for its dead-letter group.
DEPENDENCY_ERROR = dict(
    zip(
        ("fingerprint", "template"),
        fingerprint("DEPENDENCY_FAILED", "dependency of the job did not complete"),
        strict=True,
    )
)


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
        # Redis Cluster (INFO cluster: cluster_enabled:1): one script, one slot, so
        # dependencies never span queues there (docs/flows.md). Set by detect_cluster().
        self.cluster = False
        self._cluster_known = False

    async def detect_cluster(self) -> bool:
        """Reads whether the server is a Redis Cluster node; called at connect."""
        info = cast(dict[str, Any], await self._read(lambda: self.client.info("cluster")))
        self.cluster = str(info.get("cluster_enabled", 0)) == "1"
        self._cluster_known = True
        return self.cluster

    async def is_cluster(self) -> bool:
        """Whether the server is a Cluster node (detected once, at the first need when
        Redis was down at connect)."""
        return self.cluster if self._cluster_known else await self.detect_cluster()

    async def run(self, script: str, queue: str, args: Any) -> Any:
        """Runs one script on a queue's keys: named arguments in, named results out."""
        return await self._run(script, queue, args)

    async def _run(self, script: str, queue: str, args: Any, others: Sequence[str] = ()) -> Any:
        """`others`: further queues whose keys the script gets (lib.lua, ARGV[5])."""
        keys = queue_keys(self.prefix, queue)
        now = self._clock()
        head = ("" if now is None else now, keys.wake_channel, keys.events_channel)
        all_keys: tuple[str, ...] = keys.keys
        sets = []
        for other in others:
            k = queue_keys(self.prefix, other)
            all_keys += k.keys
            sets.append((other, k.wake_channel, k.events_channel))
        extra = _pack(
            {"queue": queue, "size": len(KEY_NAMES), "queues": sets, "dep_error": DEPENDENCY_ERROR}
        )
        with unavailable_on_connection_errors():
            raw = await self._scripts[script](keys=all_keys, args=[*head, _pack(args), extra])
        return _unpack(raw)

    async def _run_chunked(
        self, script: str, queue: str, items: list[Any], dependants: bool = False
    ) -> list[Any]:
        """A script that takes a list of independent items, JOBS_PER_CALL per call: each
        item's outcome is its own, so splitting the list changes no answer. With
        `dependants`, each call gets the keys of the queues of the items' dependants."""
        rows: list[Any] = []
        for part in chunks(items):
            others: Sequence[str] = ()
            if dependants:
                others = await self.dependant_queues(queue, [item["seq"] for item in part])
            rows.extend(await self._run(script, queue, part, others))
        return rows

    async def dependant_queues(self, queue: str, seqs: Sequence[int | str]) -> list[str]:
        """The other queues holding dependants of jobs `seqs` (at most MAX_OTHER_QUEUES),
        read before a script that may finish them: it must be given their keys. None on a
        Cluster, where dependants are always in their dependency's queue. The script
        checks again: a dependant in a queue not given is left for resolve.lua."""
        if self.cluster or not seqs:
            return []

        async def read() -> list[list[bytes]]:
            async with self.client.pipeline(transaction=False) as pipe:
                for seq in seqs:
                    key = set_key(self.prefix, queue, f"dependants:{seq}")
                    pipe.srandmember(key, MAX_OTHER_QUEUES)
                return cast(list[list[bytes]], await pipe.execute())

        found = {q.decode() for members in await self._read(read) for q in members}
        found.discard(queue)
        return sorted(found)[:MAX_OTHER_QUEUES]

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

    async def enqueue(
        self, queue: str, jobs: Sequence[NewJob], field: str = "job"
    ) -> list[Enqueued]:
        """Adds jobs; UnknownDependency (naming `field`.depends_on[j], or with
        field "jobs" `jobs[i].depends_on[j]`) when a dependency does not exist."""
        flow = [
            FlowEntry(queue, job, (), f"{field}[{i}]" if field == "jobs" else field)
            for i, job in enumerate(jobs)
        ]
        if not any(job.depends_on for job in jobs):
            await self.register(queue)
            return await self._enqueue(queue, [_enqueue_item(e, queue) for e in flow], ())
        return await self.enqueue_flow(flow)

    async def enqueue_flow(self, entries: Sequence["FlowEntry"]) -> list[Enqueued]:
        """Adds jobs of any queues in one script call, all or none; an entry's `refs`
        are indexes of earlier entries it depends on (docs/flows.md)."""
        home = entries[0].queue
        queues = {e.queue for e in entries}
        queues.update(d.rsplit(":", 1)[0] for e in entries for d in e.job.depends_on)
        others = sorted(queues - {home})
        results = await self._enqueue(home, [_enqueue_item(e, home) for e in entries], others)
        # Registered after: refused, the call writes nothing at all. (A crash in between
        # leaves the queues for their next enqueue to register.)
        for q in sorted(queues):
            await self.register(q)
        return results

    async def _enqueue(
        self, queue: str, items: list[dict[str, Any]], others: Sequence[str]
    ) -> list[Enqueued]:
        args: dict[str, Any] = {"queue": queue, "defaults": self._defaults, "jobs": items}
        if any(i["idempotency_mode"] == IdempotencyMode.REPLACE.value for i in items):
            args["spec_fields"] = list(schema.SPEC_STORED)
        rows = await self._run("enqueue", queue, args, others)
        if isinstance(rows, dict):
            if "invalid" in rows:
                raise DeadlineRefused([_refusal(r) for r in rows["invalid"]])
            raise UnknownDependency(rows["missing"].decode())
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
            retry_after_ms=out.batch.retry_after_ms,
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
            retry_after_ms=None if out.get("retry_after_ms", -1) < 0 else out["retry_after_ms"],
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
        rows = await self._run_chunked("complete", queue, args, dependants=True)
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
                "rand": JITTER.random(),
                "rate_limit_delay_ms": item.rate_limit_delay_ms,
            }
            for item in items
        ]
        return _fail_results(await self._run_chunked("fail", queue, args, dependants=True))

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
        others = await self.dependant_queues(queue, [seq])
        r = await self._run("cancel", queue, {"seq": seq}, others)
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
                        pipe.zcard(set_key(self.prefix, queue, state_set(state.value)))
                return cast(list[int], await pipe.execute())

        counts = iter(await self._read(count))
        return {queue: {state: int(next(counts)) for state in states} for queue in queues}

    # -- maintenance ----------------------------------------------------------------

    async def reclaim(self, queue: str, limit: int = JOBS_PER_CALL) -> list[Reclaimed]:
        args = {"limit": limit, "rand": JITTER.random(), "errors": RECLAIM_ERRORS}
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

    async def resolve(self, queue: str, limit: int = 10) -> tuple[int, int]:
        """Resolves dependants left for later (resolve.lua): returns how many were
        resolved and how many finished jobs still have some left."""
        key = set_key(self.prefix, queue, "resolve")
        entries = cast(list[bytes], await self._read(lambda: self.client.zrange(key, 0, limit - 1)))
        if not entries:
            return 0, 0
        others = await self.dependant_queues(queue, [e.split(b"|")[0].decode() for e in entries])
        r = await self._run("resolve", queue, {"limit": limit}, others)
        return int(r["resolved"]), int(r["left"])

    async def get_many(self, ids: Sequence[tuple[str, int]]) -> list[JobRecord | None]:
        """Jobs by (queue, seq), in one round trip; None for each that does not exist."""
        if not ids:
            return []

        async def read() -> list[dict[bytes, bytes]]:
            async with self.client.pipeline(transaction=False) as pipe:
                for queue, seq in ids:
                    pipe.hgetall(job_key(self.prefix, queue, seq))
                return cast(list[dict[bytes, bytes]], await pipe.execute())

        rows = await self._read(read)
        return [
            schema.job(queue, raw) if raw else None
            for (queue, _), raw in zip(ids, rows, strict=True)
        ]

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


class FlowEntry(NamedTuple):
    """One job of a flow: its queue, the job (its depends_on ids existing jobs), the
    indexes of earlier entries it also waits for, and the request field it came from."""

    queue: str
    job: NewJob
    refs: tuple[int, ...]
    field: str


def _enqueue_item(entry: FlowEntry, home: str) -> dict[str, Any]:
    """An entry as enqueue.lua takes it."""
    job = entry.job
    item: dict[str, Any] = {
        "spec": schema.spec(job),
        "delay_ms": job.delay_ms,
        "run_at_ms": job.run_at_ms,
        "idempotency_window_ms": job.idempotency_window_ms,
        "idempotency_mode": job.idempotency_mode.value,
    }
    if entry.queue != home:
        item["queue"] = entry.queue
    deps: list[dict[str, Any]] = []
    for j, dep in enumerate(job.depends_on):
        dep_queue, seq = dep.rsplit(":", 1)
        deps.append({"queue": dep_queue, "seq": seq, "field": f"{entry.field}.depends_on[{j}]"})
    deps += [{"ref": ref + 1} for ref in entry.refs]
    if deps:
        item["deps"] = deps
    return item


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
