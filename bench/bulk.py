"""Bulk operations on a big queue (issue 10, acceptance 8; docs/bulk-operations.md): fills
one queue with 1,000,000 jobs in every state, runs every admin RPC, Lease and the
maintenance scripts against it over real gRPC, and reads Valkey's SLOWLOG to find the
longest single command (script call) in the window of each operation. Exits non-zero
when a script call took more than 50 ms.

    python bench/bulk.py [--jobs 1000000] [--json out.json]

tests/test_bulk_latency.py runs the same code on 200,000 jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.fingerprint import fingerprint
from jobwire_broker.domain.model import NewJob, Retention
from jobwire_broker.store import Store
from jobwire_broker.store.batches import EXAMINE_PER_CALL, JOBS_PER_CALL
from jobwire_broker.store.keys import queue_key
from jobwire_broker.store.scripts import SCRIPT_NAMES, full_source
from redis.asyncio import Redis

QUEUE = "bulk"
# The API's largest batch: a page, a Lease, an EnqueueBatch, a SettleBatch, ids per call.
BULK_BATCH = 1_000
MAX_IDS = 100  # the most job ids a RetryJobs, DeleteJobs or PromoteJobs takes
LIMIT_MS = 50.0
# Slower than this (µs) goes into SLOWLOG; the log holds this many entries.
SLOWLOG_US = 1_000
SLOWLOG_LEN = 1_000_000
LOAD_CONCURRENCY = 3
DAY_MS = 86_400_000
# Retention that deletes nothing during the run (counts: UpdateQueue's largest).
KEEP_ALL = 100_000_000
FAR = 10 * 365 * DAY_MS

# The dead letters' errors: (type, message of job i, share of the dead jobs). Messages
# differ in numbers, addresses and quoted values, so each type is one group.
FAILURES: tuple[tuple[str, Callable[[int], str], float], ...] = (
    ("TimeoutError", lambda i: f"upstream 10.0.{i % 200}.{i % 97} timed out after {i} ms", 0.40),
    ("ConnectionError", lambda i: f"connection refused by db-{i % 7}:5432", 0.27),
    ("ValueError", lambda i: f"invalid wallet address 0x{i:040x}", 0.17),
    ("KeyError", lambda i: f"missing key 'user_{i}'", 0.10),
    ("RateLimited", lambda i: f"429 from api.example.com, retry after {i % 60} s", 0.06),
)
TENANTS = 16
RARE_EVERY = 10_000  # one ready job in this many carries the header vip=1


@dataclass(frozen=True)
class Shape:
    """How many jobs the queue holds in each state when the operations start."""

    ready: int
    scheduled: int
    dead: int
    completed: int
    deep_pages: int  # pages of 1000 ListJobs walks with its token for the deep page

    @classmethod
    def of(cls, total: int) -> Shape:
        """60% ready, 20% scheduled, 15% dead, 5% completed; a deep page 20% in."""
        dead, completed, scheduled = total * 15 // 100, total * 5 // 100, total * 20 // 100
        ready = total - dead - completed - scheduled
        return cls(ready, scheduled, dead, completed, max(1, ready // 5 // BULK_BATCH))

    @property
    def total(self) -> int:
        return self.ready + self.scheduled + self.dead + self.completed


def failure_of(i: int) -> tuple[str, str]:
    """The error of the i-th dead job (0-based): the shares of FAILURES, interleaved."""
    at = (i * 0.6180339887) % 1.0
    for error_type, message, share in FAILURES:
        if at < share:
            return error_type, message(i)
        at -= share
    error_type, message, _ = FAILURES[-1]
    return error_type, message(i)


def group_of(error_type: str) -> str:
    """The dead-letter fingerprint of FAILURES' error type."""
    for name, message, _ in FAILURES:
        if name == error_type:
            return fingerprint(name, message(1))[0]
    raise KeyError(error_type)


def payload(seq: int) -> bytes:
    """The standard 100-byte JSON payload (docs/benchmark.md)."""
    head = f'{{"seq":"{seq:08d}","op":"noop","tenant":"t-{seq % TENANTS:04d}","ts":"'
    head += f'{time.time():.6f}","pad":"'
    return (head + "x" * (100 - len(head) - 2) + '"}').encode()


def new_job(i: int, **options: Any) -> NewJob:
    headers = {"tenant": f"t-{i % TENANTS:04d}"}
    if i % RARE_EVERY == RARE_EVERY - 1:
        headers["vip"] = "1"
    return NewJob(payload(i), "application/json", headers, **options)


# -- SLOWLOG ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Slow:
    """One SLOWLOG entry: a command that ran longer than SLOWLOG_US."""

    id: int
    duration_us: int
    command: str  # EVALSHA <script name>, or the command's name and first key

    @property
    def ms(self) -> float:
        return self.duration_us / 1000

    @property
    def is_script(self) -> bool:
        return self.command.startswith(("EVAL", "FCALL"))


def script_names() -> dict[str, str]:
    """Script SHA -> name, as redis-py computes the SHA of what it registers."""
    return {hashlib.sha1(full_source(n).encode()).hexdigest(): n for n in SCRIPT_NAMES}


class Slowlog:
    def __init__(self, client: Redis) -> None:
        self.client = client
        self.scripts = script_names()

    async def configure(self) -> None:
        for name, value in (
            ("slowlog-log-slower-than", SLOWLOG_US),
            ("slowlog-max-len", SLOWLOG_LEN),
            ("latency-monitor-threshold", 1),
        ):
            await self.client.config_set(name, value)
        await self.reset()

    async def reset(self) -> None:
        await self.client.execute_command("SLOWLOG", "RESET")
        await self.client.execute_command("LATENCY", "RESET")

    async def mark(self) -> int:
        """The id of the latest entry (ids keep rising across RESET), or -1."""
        latest = await self.client.slowlog_get(1)
        return int(latest[0]["id"]) if latest else -1

    async def entries(self) -> list[Slow]:
        rows = await self.client.slowlog_get(SLOWLOG_LEN)
        return sorted((self._entry(r) for r in rows), key=lambda s: s.id)

    def _entry(self, row: dict[str, Any]) -> Slow:
        raw = row["command"]
        args = (raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)).split()
        name = args[0].upper() if args else "?"
        if name in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            name = f"{name} {self.scripts.get(args[1], 'sha:' + args[1][:8])}"
        elif len(args) > 1:
            name = f"{name} {args[1]}"
        return Slow(int(row["id"]), int(row["duration"]), name)

    async def latency(self) -> list[tuple[str, int, int]]:
        """LATENCY LATEST: (event, latest ms, max ms) of each event since the reset."""
        rows = await self.client.execute_command("LATENCY", "LATEST")
        out = []
        for row in rows or []:
            event = row[0].decode() if isinstance(row[0], bytes) else str(row[0])
            out.append((event, int(row[2]), int(row[3])))
        return out


# -- operations ------------------------------------------------------------------------


# What an operation is, for the table and the verdict: the setup only fills the queue.
KINDS = {
    "admin": "admin RPCs (AdminService)",
    "broker": "broker calls at their largest batch (BrokerService)",
    "maintenance": "maintenance scripts",
    "atomic": "EnqueueBatch: all or none by contract, one script call (reported, not judged)",
    "setup": "setup (not judged)",
}
JUDGED = ("admin", "broker", "maintenance")


@dataclass
class Op:
    name: str
    kind: str = "admin"
    status: str = "ok"  # ok, "not yet" (UNIMPLEMENTED) or the error
    detail: str = ""
    wall_s: float = 0.0
    first_id: int = -1  # SLOWLOG entries with first_id < id <= last_id ran in its window
    last_id: int = -1
    slow: list[Slow] = field(default_factory=list)

    def worst(self, scripts: bool = True) -> Slow | None:
        chosen = [s for s in self.slow if s.is_script == scripts]
        return max(chosen, key=lambda s: s.duration_us, default=None)


@dataclass
class Report:
    shape: Shape
    ops: list[Op]
    latency: list[tuple[str, int, int]]
    # script -> (calls over SLOWLOG_US, their median ms, worst ms)
    by_script: dict[str, tuple[int, float, float]]
    cpus: str = "not pinned"

    def judged(self, kinds: Sequence[str] = JUDGED) -> list[Op]:
        return [op for op in self.ops if op.kind in kinds]

    def worst_of(self, kinds: Sequence[str] = JUDGED) -> Slow | None:
        found = [w for w in (op.worst() for op in self.judged(kinds)) if w]
        return max(found, key=lambda s: s.duration_us, default=None)

    @property
    def noise_ms(self) -> int:
        """The longest an O(1) command took in the run (LATENCY's fast-command): time the
        machine held Valkey off the CPU, which any script call may include as well."""
        return max((worst for e, _, worst in self.latency if e == "fast-command"), default=0)

    def over_limit(self, kinds: Sequence[str] = JUDGED) -> list[tuple[Op, Slow]]:
        """Script calls over LIMIT_MS, even after taking off the machine's noise."""
        bound = LIMIT_MS + self.noise_ms
        return [
            (op, s) for op in self.judged(kinds) for s in op.slow if s.is_script and s.ms > bound
        ]

    def script_ms(self, kinds: Sequence[str] = JUDGED) -> list[float]:
        return sorted(s.ms for op in self.judged(kinds) for s in op.slow if s.is_script)

    def not_ok(self, kinds: Sequence[str] = JUDGED) -> list[str]:
        """Operations that did not run: "not yet" (UNIMPLEMENTED) or an error."""
        return [f"{op.name} ({op.status})" for op in self.judged(kinds) if op.status != "ok"]

    @property
    def not_yet(self) -> list[str]:
        return [op.name for op in self.ops if op.status == "not yet"]

    def table(self) -> str:
        s = self.shape
        lines = [
            f"queue of {s.total:,} jobs: {s.ready:,} ready, {s.scheduled:,} scheduled, "
            f"{s.dead:,} dead, {s.completed:,} completed; at most {JOBS_PER_CALL} jobs moved "
            f"and {EXAMINE_PER_CALL} examined per script call; {self.cpus}",
            f"{'operation':56} {'wall s':>7} {'>1ms':>5} {'>50ms':>5} {'median':>7} "
            f"{'worst script ms':>26} {'worst other ms':>20}  result",
        ]
        for kind, title in KINDS.items():
            ops = [op for op in self.ops if op.kind == kind]
            if ops:
                lines.append(f"-- {title}")
            for op in ops:
                scripts = [x for x in op.slow if x.is_script]
                over = sum(1 for x in scripts if x.ms > LIMIT_MS)
                median = statistics.median(x.ms for x in scripts) if scripts else 0.0
                lines.append(
                    f"{op.name:56} {op.wall_s:>7.2f} {len(scripts):>5} {over:>5} {median:>7.1f} "
                    f"{_cell(op.worst(True)):>26} {_cell(op.worst(False)):>20}  {op.status}"
                    + (f": {op.detail}" if op.detail else "")
                )
        lines.append("")
        lines.append("by script, setup included (calls slower than 1 ms, median, worst):")
        for name, (calls, median, worst) in sorted(
            self.by_script.items(), key=lambda kv: -kv[1][2]
        ):
            lines.append(f"  {name:40} {calls:>7} {median:>9.2f} ms {worst:>9.2f} ms")
        events = ", ".join(f"{e} {latest}/{worst}" for e, latest, worst in self.latency)
        lines.append(f"LATENCY LATEST (event latest/max ms): {events or 'nothing over 1 ms'}")
        noise = self.noise_ms
        if noise > 5:
            lines.append(
                f"note: an O(1) command took {noise} ms: the OS held Valkey off the CPU, so "
                "single figures include the machine's noise (see the medians)"
            )
        for kinds, what in ((("admin",), "admin RPCs"), (JUDGED, "all judged operations")):
            worst = self.worst_of(kinds)
            lines.append(
                f"worst single script call, {what}: {_cell(worst)} (limit {LIMIT_MS:.0f} ms)"
            )
        logged = self.script_ms()
        if logged:
            p99 = logged[min(len(logged) - 1, int(len(logged) * 0.99))]
            lines.append(
                f"judged script calls over 1 ms: {len(logged):,}, median "
                f"{statistics.median(logged):.1f} ms, p99 {p99:.1f} ms, over {LIMIT_MS:.0f} ms: "
                f"{sum(1 for x in logged if x > LIMIT_MS)}; over {LIMIT_MS:.0f} ms + the "
                f"noise of {noise} ms: {len(self.over_limit())}"
            )
        if self.not_yet:
            lines.append("not yet implemented: " + ", ".join(self.not_yet))
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "shape": asdict(self.shape),
            "cpus": self.cpus,
            "jobs_per_call": JOBS_PER_CALL,
            "examine_per_call": EXAMINE_PER_CALL,
            "limit_ms": LIMIT_MS,
            "worst_script_ms": _ms(self.worst_of()),
            "worst_admin_script_ms": _ms(self.worst_of(("admin",))),
            "noise_ms": self.noise_ms,
            "over_limit_after_noise": len(self.over_limit()),
            "ops": [
                {
                    "name": op.name,
                    "kind": op.kind,
                    "status": op.status,
                    "detail": op.detail,
                    "wall_s": round(op.wall_s, 3),
                    "worst_script": _cell(op.worst(True)),
                    "worst_other": _cell(op.worst(False)),
                    "script_calls_over_1ms": sum(1 for x in op.slow if x.is_script),
                }
                for op in self.ops
            ],
            "by_script": self.by_script,
            "latency_latest": self.latency,
        }


def _ms(slow: Slow | None) -> float:
    return slow.ms if slow else 0.0


def _cell(slow: Slow | None) -> str:
    return f"{slow.ms:.2f} {slow.command.split(' ', 1)[-1]}" if slow else "-"


class Bench:
    """The queue, the clients, and the operations run against it in order."""

    def __init__(self, channel: grpc.aio.Channel, redis: Redis, prefix: str, shape: Shape) -> None:
        self.broker = rpc.BrokerServiceStub(channel)
        self.admin = arpc.AdminServiceStub(channel)
        self.redis = redis
        self.prefix = prefix
        self.store = Store(redis, prefix)
        self.shape = shape
        self.slowlog = Slowlog(redis)
        self.ops: list[Op] = []
        self._mark = -1

    def key(self, name: str) -> str:
        return queue_key(self.prefix, QUEUE, name)

    async def count(self, state: str) -> int:
        return int(await self.redis.zcard(self.key(state)))

    @contextlib.asynccontextmanager
    async def op(self, name: str, kind: str = "admin", strict: bool = False) -> AsyncIterator[Op]:
        """Times one operation and records the SLOWLOG ids of its window. UNIMPLEMENTED
        marks it "not yet"; another RPC error is recorded, and the run goes on (unless
        `strict`: the setup's errors end the run)."""
        op = Op(name, kind, first_id=await self.slowlog.mark())
        start = time.perf_counter()
        try:
            yield op
        except grpc.aio.AioRpcError as exc:
            if strict:
                raise
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                op.status = "not yet"
            else:
                op.status = f"{exc.code().name}: {exc.details()}"
        finally:
            op.wall_s = time.perf_counter() - start
            op.last_id = await self.slowlog.mark()
            self.ops.append(op)

    # -- setup ---------------------------------------------------------------------

    async def setup(self) -> None:
        s = self.shape
        # Retention that deletes nothing while the run fills and works the queue.
        await self.redis.hset(
            self.key("settings"),
            mapping={
                "keep_completed": KEEP_ALL,
                "completed_max_age_ms": FAR,
                "keep_dead": KEEP_ALL,
                "dead_max_age_ms": FAR,
            },
        )
        finished = s.dead + s.completed
        async with self.op(
            f"setup: enqueue {finished:,} (1000/script), lease + settle", "setup", True
        ):
            await self.enqueue(range(finished))
            await asyncio.gather(*(self.lease_and_settle(finished) for _ in range(2)))
        async with self.op(
            f"setup: enqueue {s.ready:,} ready, {s.scheduled:,} scheduled", "setup", True
        ):
            # The first batch leases for 1 s only: "Lease 1000" takes it, and the
            # maintenance loop then reclaims the 1000 at once.
            await self.enqueue(range(finished, finished + BULK_BATCH), lease_ms=1_000)
            await self.enqueue(range(finished + BULK_BATCH, finished + s.ready))
            start = finished + s.ready
            await self.enqueue(range(start, start + s.scheduled), scheduled=True)
        counts = {state: await self.count(state) for state in ("ready", "scheduled", "dead")}
        counts["completed"] = await self.count("completed")
        want = {"ready": s.ready, "scheduled": s.scheduled, "dead": s.dead}
        want["completed"] = s.completed
        if counts != want:
            raise RuntimeError(f"setup left {counts}, wanted {want}")

    async def enqueue(
        self, indexes: range, lease_ms: int | None = None, scheduled: bool = False
    ) -> None:
        """The store's enqueue script, BULK_BATCH jobs per call, a few calls at a time."""
        gate = asyncio.Semaphore(LOAD_CONCURRENCY)
        now_ms = int(time.time() * 1000)

        async def batch(start: int) -> None:
            jobs = [
                new_job(
                    i,
                    lease_ms=lease_ms,
                    run_at_ms=now_ms + DAY_MS + i if scheduled else 0,
                )
                for i in range(start, min(start + BULK_BATCH, indexes.stop))
            ]
            async with gate:
                await self.store.enqueue(QUEUE, jobs)

        await asyncio.gather(*(batch(i) for i in range(indexes.start, indexes.stop, BULK_BATCH)))

    async def lease_and_settle(self, finished: int) -> None:
        """Leases 1000 at a time and settles them in one SettleBatch: the first
        shape.dead jobs (by sequence) fail non-retryably, the rest complete."""
        while True:
            reply = await self.broker.Lease(
                pb.LeaseRequest(queue=QUEUE, max_jobs=BULK_BATCH, worker_id="bulk-setup")
            )
            if not reply.jobs:
                return
            await self.broker.SettleBatch(
                pb.SettleBatchRequest(settlements=[self.settlement(h) for h in reply.jobs])
            )

    def settlement(self, held: pb.LeasedJob) -> pb.Settlement:
        seq = int(held.job.id.rsplit(":", 1)[1])
        if seq > self.shape.dead:
            return pb.Settlement(
                complete=pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token)
            )
        error_type, message = failure_of(seq - 1)
        return pb.Settlement(
            fail=pb.FailRequest(
                job_id=held.job.id,
                lease_token=held.lease_token,
                error=job_pb2.JobError(type=error_type, message=message, non_retryable=True),
            )
        )

    # -- the operations --------------------------------------------------------------

    async def run_ops(self) -> None:
        for step in self.steps():
            await step()

    def steps(self) -> Sequence[Callable[[], Awaitable[None]]]:
        return (
            self.queue_reads,
            self.list_jobs,
            self.triage_reads,
            self.pause_resume,
            self.lease_and_reclaim,
            self.producer_and_worker_batches,
            self.dead_letters,
            self.delete_jobs,
            self.prune,
            self.promote_drain_delete,
        )

    async def queue_reads(self) -> None:
        a, q = self.admin, QUEUE
        async with self.op("GetQueue") as op:
            got = await a.GetQueue(apb.GetQueueRequest(queue=q))
            op.detail = _counts(got.queue.counts)
        async with self.op("ListQueues") as op:
            listed = await a.ListQueues(apb.ListQueuesRequest())
            op.detail = f"{len(listed.queues)} queue(s)"
        async with self.op("UpdateQueue (retention, mask)"):
            await a.UpdateQueue(
                apb.UpdateQueueRequest(
                    queue=q,
                    settings=apb.QueueSettings(keep_completed=KEEP_ALL, keep_dead=KEEP_ALL),
                    update_mask={"paths": ["keep_completed", "keep_dead"]},
                )
            )

    async def list_jobs(self) -> None:
        a, q = self.admin, QUEUE
        ready, dead = job_pb2.JOB_STATE_READY, job_pb2.JOB_STATE_DEAD
        async with self.op("ListJobs ready, first page of 1000") as op:
            page = await a.ListJobs(apb.ListJobsRequest(queue=q, state=ready, page_size=1000))
            op.detail = f"{len(page.jobs)} jobs"
        async with self.op("ListJobs dead, newest first, error_type=KeyError") as op:
            page = await a.ListJobs(
                apb.ListJobsRequest(
                    queue=q,
                    state=dead,
                    order=apb.LIST_ORDER_NEWEST_FIRST,
                    page_size=1000,
                    filter=apb.JobFilter(error_type="KeyError"),
                )
            )
            op.detail = f"{len(page.jobs)} jobs"
        async with self.op("ListJobs ready, header vip=1 (rare: examines 5000)") as op:
            page = await a.ListJobs(
                apb.ListJobsRequest(
                    queue=q,
                    state=ready,
                    page_size=1000,
                    filter=apb.JobFilter(header_key="vip", header_value="1"),
                )
            )
            op.detail = f"{len(page.jobs)} jobs, token {'set' if page.next_page_token else 'empty'}"
        pages = self.shape.deep_pages
        async with self.op(f"ListJobs ready, page {pages + 1} via token (x1000, walk)") as op:
            token, seen = "", 0
            for _ in range(pages + 1):
                page = await a.ListJobs(
                    apb.ListJobsRequest(queue=q, state=ready, page_size=1000, page_token=token)
                )
                seen += len(page.jobs)
                token = page.next_page_token
                if not token:
                    break
            op.detail = f"{seen:,} jobs listed, last id {page.jobs[-1].id if page.jobs else '-'}"

    async def triage_reads(self) -> None:
        a, q = self.admin, QUEUE
        async with self.op("ListDeadLetterGroups") as op:
            groups = await a.ListDeadLetterGroups(apb.ListDeadLetterGroupsRequest(queue=q))
            op.detail = ", ".join(f"{g.error_type} {g.count:,}" for g in groups.groups)
        async with self.op("ListWorkers") as op:
            workers = await a.ListWorkers(apb.ListWorkersRequest(queue=q, include_gone=True))
            op.detail = f"{len(workers.workers)} worker(s)"
        async with self.op("WatchQueue from 0 (first 10,000 events)") as op:
            n = 0
            call = a.WatchQueue(apb.WatchQueueRequest(queue=q, after_event_id="0"))
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        async for _ in call:
                            n += 1
                            if n >= 10_000:
                                break
            finally:
                call.cancel()
            op.detail = f"{n:,} events"

    async def pause_resume(self) -> None:
        a, q = self.admin, QUEUE
        async with self.op("PauseQueue") as pause:
            await a.PauseQueue(apb.PauseQueueRequest(queue=q))
        if pause.status == "ok":  # else it would lease the jobs the next step wants
            async with self.op("Lease 1000 while paused", "broker") as op:
                reply = await self.broker.Lease(pb.LeaseRequest(queue=q, max_jobs=BULK_BATCH))
                op.detail = f"{len(reply.jobs)} jobs"
        async with self.op("ResumeQueue"):
            await a.ResumeQueue(apb.ResumeQueueRequest(queue=q))

    async def lease_and_reclaim(self) -> None:
        async with self.op("Lease 1000 (leases of 1 s)", "broker") as op:
            reply = await self.broker.Lease(
                pb.LeaseRequest(queue=QUEUE, max_jobs=BULK_BATCH, worker_id="bulk-lease")
            )
            op.detail = f"{len(reply.jobs)} jobs"
        async with self.op("reclaim 1000 expired leases, promote them", "maintenance") as op:
            # They expire after 1 s; reclaim schedules their retry ~1 s out (backoff),
            # then promote makes them ready: one script call each, 1000 jobs.
            scheduled = self.shape.scheduled
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                active, waiting = await self.count("active"), await self.count("scheduled")
                if active == 0 and waiting <= scheduled:
                    break
                await asyncio.sleep(0.05)
            op.detail = f"active {active}, scheduled {waiting:,}"

    async def producer_and_worker_batches(self) -> None:
        async with self.op("EnqueueBatch 1000, 5 calls", "atomic"):
            for k in range(5):
                start = 10_000_000 + k * BULK_BATCH
                await self.broker.EnqueueBatch(
                    pb.EnqueueBatchRequest(
                        queue=QUEUE,
                        jobs=[
                            job_pb2.JobSpec(payload=payload(i), content_type="application/json")
                            for i in range(start, start + BULK_BATCH)
                        ],
                    )
                )
        for kind in ("complete", "fail"):
            async with self.op(f"Lease 1000 + SettleBatch of 1000 {kind}s", "broker") as op:
                reply = await self.broker.Lease(
                    pb.LeaseRequest(queue=QUEUE, max_jobs=BULK_BATCH, worker_id="bulk-worker")
                )
                items = []
                for i, h in enumerate(reply.jobs):
                    if kind == "complete":
                        done = pb.CompleteRequest(job_id=h.job.id, lease_token=h.lease_token)
                        items.append(pb.Settlement(complete=done))
                    else:
                        error = job_pb2.JobError(
                            type="TimeoutError", message=FAILURES[0][1](i), non_retryable=True
                        )
                        failed = pb.FailRequest(
                            job_id=h.job.id, lease_token=h.lease_token, error=error
                        )
                        items.append(pb.Settlement(fail=failed))
                await self.broker.SettleBatch(pb.SettleBatchRequest(settlements=items))
                op.detail = f"{len(items)} settled"

    async def dead_letters(self) -> None:
        a, q = self.admin, QUEUE
        dead = job_pb2.JOB_STATE_DEAD
        page = await a.ListJobs(apb.ListJobsRequest(queue=q, state=dead, page_size=MAX_IDS))
        async with self.op(f"RetryJobs by {MAX_IDS} ids (all or none: one call)") as op:
            r = await a.RetryJobs(apb.RetryJobsRequest(queue=q, job_ids=[j.id for j in page.jobs]))
            op.detail = f"{r.retried:,} retried"
        async with self.op("RetryJobs state=DEAD, error_type=KeyError") as op:
            r = await a.RetryJobs(
                apb.RetryJobsRequest(
                    queue=q, state=dead, filter=apb.JobFilter(error_type="KeyError")
                )
            )
            op.detail = f"{r.retried:,} retried"
        async with self.op("RedriveDeadLetters dry run, group TimeoutError") as op:
            op.detail = await self.redrive(group_of("TimeoutError"), dry_run=True)
        async with self.op("RedriveDeadLetters rate 0, group ConnectionError") as op:
            op.detail = await self.redrive(group_of("ConnectionError"))
        async with self.op("PurgeDeadLetters group ValueError") as op:
            r = await a.PurgeDeadLetters(
                apb.PurgeDeadLettersRequest(queue=q, fingerprint=group_of("ValueError"))
            )
            op.detail = f"{r.purged:,} purged"
        async with self.op("PurgeDeadLetters older_than 1 d (dry run)") as op:
            r = await a.PurgeDeadLetters(
                apb.PurgeDeadLettersRequest(
                    queue=q, older_than=Duration(seconds=86_400), dry_run=True
                )
            )
            op.detail = f"{r.purged:,} would go"

    async def redrive(self, group: str, dry_run: bool = False) -> str:
        request = apb.RedriveDeadLettersRequest(queue=QUEUE, fingerprint=group, dry_run=dry_run)
        messages = [m async for m in self.admin.RedriveDeadLetters(request)]
        if not messages:
            return "no message"
        last = messages[-1]
        return f"{len(messages)} messages, matched {last.matched:,}, redriven {last.redriven:,}"

    async def delete_jobs(self) -> None:
        async with self.op("DeleteJobs state=COMPLETED, header tenant=t-0003") as op:
            r = await self.admin.DeleteJobs(
                apb.DeleteJobsRequest(
                    queue=QUEUE,
                    state=job_pb2.JOB_STATE_COMPLETED,
                    filter=apb.JobFilter(header_key="tenant", header_value="t-0003"),
                )
            )
            op.detail = f"{r.deleted:,} deleted"

    async def prune(self) -> None:
        """The maintenance loop's prune with retention lowered so it deletes a full
        batch from each finished set: called here once, with the loop's own limit."""
        keep_completed = max(0, await self.count("completed") - JOBS_PER_CALL)
        keep_dead = max(0, await self.count("dead") - JOBS_PER_CALL)
        async with self.op(f"prune: one call at its limit of {JOBS_PER_CALL}", "maintenance") as op:
            await self.redis.hset(
                self.key("settings"),
                mapping={"keep_completed": keep_completed, "keep_dead": keep_dead},
            )
            deleted = await self.store.prune(QUEUE, Retention(), limit=JOBS_PER_CALL)
            op.detail = f"{deleted:,} deleted"
        # Back to keeping everything, so the loop's own prune ticks stay idle.
        await self.redis.hset(
            self.key("settings"), mapping={"keep_completed": KEEP_ALL, "keep_dead": KEEP_ALL}
        )

    async def promote_drain_delete(self) -> None:
        a, q = self.admin, QUEUE
        async with self.op("PromoteJobs (every scheduled job)") as op:
            r = await a.PromoteJobs(apb.PromoteJobsRequest(queue=q))
            op.detail = f"{r.promoted:,} promoted"
        async with self.op("GetQueue (after the bulk moves)") as op:
            got = await a.GetQueue(apb.GetQueueRequest(queue=q))
            op.detail = _counts(got.queue.counts)
        async with self.op("DrainQueue") as op:
            r = await a.DrainQueue(apb.DrainQueueRequest(queue=q))
            op.detail = f"{r.deleted:,} deleted"
        async with self.op("DeleteQueue force") as op:
            r = await a.DeleteQueue(apb.DeleteQueueRequest(queue=q, force=True))
            op.detail = f"{r.deleted:,} deleted"

    # -- the report ------------------------------------------------------------------

    async def report(self) -> Report:
        slow = await self.slowlog.entries()
        for op in self.ops:
            op.slow = [s for s in slow if op.first_id < s.id <= op.last_id]
        # Whatever ran between operations: the maintenance loop's ticks, mostly.
        bounds = sorted((op.first_id, op.last_id) for op in self.ops)
        between = Op("between operations (the maintenance loop's ticks)", "maintenance")
        between.slow = [s for s in slow if not any(lo < s.id <= hi for lo, hi in bounds)]
        times: dict[str, list[float]] = {}
        for s in slow:
            if s.is_script:
                times.setdefault(s.command, []).append(s.ms)
        by_script = {name: (len(ms), statistics.median(ms), max(ms)) for name, ms in times.items()}
        ops = [*self.ops, between] if between.slow else list(self.ops)
        return Report(self.shape, ops, await self.slowlog.latency(), by_script)


def _counts(c: apb.QueueCounts) -> str:
    return (
        f"ready {c.ready:,} scheduled {c.scheduled:,} active {c.active:,} "
        f"dead {c.dead:,} completed {c.completed:,}"
    )


@contextlib.contextmanager
def redis_on_its_own_core(redis_pid: int, broker_pid: int) -> Iterator[str]:
    """Valkey alone on CPU 0 at real-time priority, the broker and this process on the
    others, as a production Redis has a core of its own: on a 2-core machine the three
    otherwise take turns on two CPUs, and a script's SLOWLOG time then includes the time
    the OS held Valkey off the CPU for someone else. Yields what was done, for the table;
    puts this process back as it was."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        yield "not pinned (one CPU)"
        return
    mine = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(redis_pid, {cpus[0]})
        os.sched_setaffinity(broker_pid, set(cpus[1:]))
        os.sched_setaffinity(0, set(cpus[1:]))
    except OSError as exc:  # another user's process, or a restricted container
        yield f"not pinned ({exc.strerror})"
        return
    done = f"Valkey pinned to CPU {cpus[0]}, broker and client to CPU {cpus[1]}-{cpus[-1]}"
    try:
        os.sched_setscheduler(redis_pid, os.SCHED_FIFO, os.sched_param(1))
        done += ", Valkey at real-time priority"
    except OSError:
        pass  # not root: pinned only
    try:
        yield done
    finally:
        os.sched_setaffinity(0, mine)


async def run(
    target: str, redis_url: str, prefix: str, shape: Shape, broker_pid: int | None = None
) -> Report:
    """Fills the queue (on the broker at `target`, Valkey at `redis_url`, keys under
    `prefix`), runs the operations, and reports what SLOWLOG saw in each one's window.
    Given the broker's pid (and Valkey on this machine), runs Valkey on its own core."""
    redis = Redis.from_url(redis_url)
    pinning: contextlib.AbstractContextManager[str] = contextlib.nullcontext("not pinned")
    if broker_pid is not None:
        redis_pid = int((await redis.info("server"))["process_id"])
        pinning = redis_on_its_own_core(redis_pid, broker_pid)
    try:
        async with grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", 64 << 20)]
        ) as channel:
            bench = Bench(channel, redis, prefix, shape)
            with pinning as cpus:
                await bench.slowlog.configure()
                await bench.setup()
                await bench.run_ops()
                report = await bench.report()
            report.cpus = cpus
            return report
    finally:
        await redis.aclose()


def fail_lines(report: Report) -> Iterable[str]:
    for op, slow in report.over_limit():
        yield (
            f"over {LIMIT_MS:.0f} ms + {report.noise_ms} ms of noise: {slow.command} took "
            f"{slow.ms:.2f} ms during {op.name}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    # Run as a script from the repository root: bench/ is on sys.path.
    from _valkey import valkey_server
    from core import Broker

    with valkey_server() as (host, port):
        broker = Broker(f"redis://{host}:{port}/0")
        try:
            report = asyncio.run(
                run(
                    f"127.0.0.1:{broker.port}",
                    f"redis://{host}:{port}/0",
                    "bench",
                    Shape.of(args.jobs),
                    broker.process.pid,
                )
            )
        finally:
            broker.stop()
    print(report.table())
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report.as_json(), out, indent=2)
    problems = list(fail_lines(report))
    for line in problems:
        print(line, file=sys.stderr)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
