"""The worker runtime: leases jobs in batches, runs handlers concurrently, heartbeats
every lease it holds in one call per interval, and settles results in small batches.

Per queue, one lease loop long-polls the broker and fills a local buffer; N runner
tasks take jobs from it. A heartbeat task renews all held leases at a fraction of their
duration and carries the latest progress (coalesced); a settler sends completions and
failures with SettleBatch, flushed within a few milliseconds. Each of these retries
through any outage with backoff and reports what fails to Worker.health (_health.py).
"""

import asyncio
import contextlib
import contextvars
import inspect
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from opentelemetry import trace

from . import _trace
from ._client import ChannelOptions, Client
from ._errors import InvalidArgument, JobwireError, LeaseLost, item_error
from ._health import HealthTracker, RetryBackoff, WorkerHealth, describe
from ._models import Progress, Seconds, duration, encode, progress_to, seconds
from .v1 import broker_service_pb2 as pb
from .v1 import job_pb2

log = logging.getLogger("jobwire.worker")
BUFFER_S = 0.05
MAX_PREFETCH = 500
MAX_RETRY_AFTER_S = 5.0  # the longest pause for retry_after: a held key must not hide new work
HEARTBEAT_RETRY_S = 1.0  # at most this apart while heartbeats fail: leases must not lapse
Handler = Callable[["Job"], Any]
H = TypeVar("H", bound=Handler)


class NonRetryable(Exception):
    """Raise (or subclass) for failures that retrying cannot fix: the job goes dead."""


class RetryAfter(Exception):
    """Raise to retry the job after exactly `delay` instead of its backoff policy."""

    expected = True  # not an error of the process span: the handler asked for it

    def __init__(self, delay: Seconds, message: str = "") -> None:
        super().__init__(message or f"retry after {seconds(delay):g}s")
        self.delay = delay


class RateLimited(Exception):
    """Raise when a downstream service rate limits the handler: the job is handed back
    uncounted and, for `delay`, the broker leases no job of its concurrency key (or, for
    a job without one, of its queue). `delay` in [1 ms, 1 h]."""

    expected = True  # not an error of the process span: the handler asked for it

    def __init__(self, delay: Seconds, message: str = "") -> None:
        super().__init__(message or f"rate limited for {seconds(delay):g}s")
        self.delay = delay


class Job:
    """A leased job as a handler sees it."""

    def __init__(self, leased: pb.LeasedJob, wake: Callable[[], None]) -> None:
        j = leased.job
        self.id: str = j.id
        self.queue: str = j.queue
        self.payload: bytes = j.spec.payload
        self.content_type: str = j.spec.content_type
        self.headers: Mapping[str, str] = dict(j.spec.headers)
        self.attempt: int = leased.attempt
        self.counted_attempts: int = j.counted_attempts
        self.max_attempts: int = j.spec.max_attempts
        self.trace_context: Mapping[str, str] = {
            "traceparent": j.spec.trace_context.traceparent,
            "tracestate": j.spec.trace_context.tracestate,
            "baggage": j.spec.trace_context.baggage,
        }
        self.lease_token: str = leased.lease_token
        self.lease_duration_s: float = j.spec.lease_duration.ToMilliseconds() / 1000 or 30.0
        self._cancelled = False  # a plain flag: set once, read by handlers in any thread
        self._pending_progress: Progress | None = None
        self._wake = wake
        self._span: trace.Span = trace.INVALID_SPAN

    def json(self) -> Any:
        """The payload decoded as JSON."""
        return json.loads(self.payload)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its lease lost: sync handlers should stop."""
        return self._cancelled

    def progress(self, percent: float, message: str = "", **details: Any) -> None:
        """Records progress; the heartbeat task sends the latest value shortly after,
        and at the latest before the job's result. Safe to call from sync handlers
        running in threads."""
        self._pending_progress = Progress(percent, message, details)
        _trace.event(self._span, "jobwire.progress", percent=percent, message=message)
        self._wake()

    def _take_progress(self) -> Progress | None:
        progress, self._pending_progress = self._pending_progress, None
        return progress


@dataclass(eq=False)
class _Held:
    """A lease the worker holds, from Lease until its settlement is acknowledged."""

    job: Job
    next_beat: float
    task: "asyncio.Future[Any] | None" = None
    span: trace.Span = trace.INVALID_SPAN
    run: _trace.Processing = _trace.NO_PROCESSING
    stop_reason: str = ""  # "lost", "cancel" or "shutdown" once the handler is stopped
    last_beat: float = 0.0
    progress_sent: "asyncio.Future[None] | None" = None  # the heartbeat carrying its progress


@dataclass
class _Queue:
    name: str
    handler: Handler
    concurrency: int
    prefetch: int | None  # None: adaptive, about BUFFER_S of work (see capacity)
    buffer: "asyncio.Queue[_Held | None]" = field(default_factory=asyncio.Queue)
    outstanding: int = 0
    room: asyncio.Event = field(default_factory=asyncio.Event)

    is_async: bool = False

    def __post_init__(self) -> None:
        call = getattr(self.handler, "__call__", None)  # noqa: B004 - async callables too
        self.is_async = inspect.iscoroutinefunction(self.handler) or (
            inspect.iscoroutinefunction(call)
        )

    avg_s: float = 0.05  # moving average of handler run time

    @property
    def capacity(self) -> int:
        """Jobs held at once: running plus buffered. Adaptive prefetch keeps about
        BUFFER_S of work waiting, so fast handlers get deep batches from each Lease and
        slow jobs are not hoarded away from other workers."""
        if self.prefetch is not None:
            return self.concurrency + self.prefetch
        ahead = round(self.concurrency * BUFFER_S / max(self.avg_s, 1e-6))
        return self.concurrency + max(1, min(ahead, MAX_PREFETCH))

    def observe(self, elapsed_s: float) -> None:
        self.avg_s += (elapsed_s - self.avg_s) * 0.05


class Worker:
    """Runs handlers for one or more queues.

        worker = Worker("127.0.0.1:50051", concurrency=10)

        @worker.handler("emails")
        async def send(job: Job) -> dict:
            ...

        asyncio.run(worker.run())

    A handler returns the result (bytes, str, or JSON-able) or raises: NonRetryable goes
    dead, RetryAfter retries after its delay, any other exception retries with backoff.

    The worker never gives up on the broker: a failing Lease, heartbeat or settlement is
    retried with capped exponential backoff until it succeeds or the worker stops (a
    Lease refused as INVALID_ARGUMENT, or another error retrying cannot fix, every 30 s),
    logged when it starts failing and when it recovers, and shown meanwhile in `health`.
    """

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        concurrency: int = 10,
        prefetch: int | None = None,
        heartbeat: bool = True,
        heartbeat_fraction: float = 1 / 3,
        progress_interval: float = 0.1,
        lease_wait: float = 5.0,
        grace_period: float = 30.0,
        settle_linger: float = 0.002,
        worker_id: str | None = None,
        options: ChannelOptions | None = None,
        trace_link_only: bool = False,
    ) -> None:
        self.target = target
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.heartbeat = heartbeat
        self.heartbeat_fraction = heartbeat_fraction
        self.progress_interval = progress_interval
        self.lease_wait = lease_wait
        self.grace_period = grace_period
        self.settle_linger = settle_linger
        self.worker_id = worker_id or f"py-{uuid.uuid4().hex[:8]}"
        self.options = options
        # The process span is a child of the job's creation span (one trace per job, as
        # Jaeger users expect) and links to it; link-only starts a new trace per attempt,
        # better for long-delayed or fan-out jobs.
        self.trace_link_only = trace_link_only
        self._queues: dict[str, _Queue] = {}
        self._held: dict[str, _Held] = {}
        self._stopping = asyncio.Event()
        self._beat_now = asyncio.Event()
        self._next_wake = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settlements: list[tuple[pb.Settlement, _Held]] = []
        self._settle_wake = asyncio.Event()
        self._settling: set[asyncio.Task[None]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._health = HealthTracker()
        self._beat_backoff = RetryBackoff(cap_s=HEARTBEAT_RETRY_S)
        self._beat_retry_at = 0.0
        self._settle_deadline = float("inf")  # once stopping: give up on settlements then

    # -- registration ---------------------------------------------------------------

    def handler(
        self, queue: str, *, concurrency: int | None = None, prefetch: int | None = None
    ) -> Callable[[H], H]:
        """Decorator that registers a handler (async, or sync to run in a thread)."""

        def register(fn: H) -> H:
            self.register(queue, fn, concurrency=concurrency, prefetch=prefetch)
            return fn

        return register

    def register(
        self,
        queue: str,
        fn: Handler,
        *,
        concurrency: int | None = None,
        prefetch: int | None = None,
    ) -> None:
        n = concurrency or self.concurrency
        ahead = self.prefetch if prefetch is None else prefetch
        self._queues[queue] = _Queue(queue, fn, n, ahead)

    @property
    def queues(self) -> list[str]:
        return list(self._queues)

    @property
    def health(self) -> WorkerHealth:
        """Whether the worker's calls to the broker are succeeding (see WorkerHealth):
        for a liveness or readiness probe. Safe to read from any thread."""
        return self._health.snapshot()

    def configure(
        self, *, concurrency: int | None = None, queues: Sequence[str] | None = None
    ) -> None:
        """Overrides concurrency for every queue and keeps only `queues` (as the CLI's
        --concurrency and --queue flags do). Call before run()."""
        if queues is not None:
            unknown = set(queues) - set(self._queues)
            if unknown:
                raise ValueError(f"no handler for queue(s): {', '.join(sorted(unknown))}")
            self._queues = {name: q for name, q in self._queues.items() if name in queues}
        if concurrency is not None:
            self.concurrency = concurrency
            for q in self._queues.values():
                q.concurrency = concurrency

    # -- running --------------------------------------------------------------------

    def stop(self) -> None:
        """Stops leasing; running jobs get the grace period to finish. Thread-safe."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stopping.set)

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        """Runs until stop() or SIGTERM/SIGINT, then shuts down gracefully."""
        if not self._queues:
            raise ValueError("no handlers registered")
        self._loop = asyncio.get_running_loop()
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stopping.set)
        threads = sum(q.concurrency for q in self._queues.values())
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="jobwire-handler")
        async with Client(self.target, options=self.options) as self.client:
            background = [asyncio.create_task(self._settle_loop())]
            if self.heartbeat:
                background.append(asyncio.create_task(self._heartbeat_loop()))
            leasing = [asyncio.create_task(self._lease_loop(q)) for q in self._queues.values()]
            for task in (*background, *leasing):
                task.add_done_callback(_report_crash)
            runners = [
                asyncio.create_task(self._runner(q))
                for q in self._queues.values()
                for _ in range(q.concurrency)
            ]
            await self._stopping.wait()
            self._settle_deadline = self._loop.time() + self.grace_period
            log.info("stopping: no new leases, %d jobs held", len(self._held))
            await asyncio.gather(*leasing)
            await self._shutdown(runners)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.remove_signal_handler(sig)

    async def _shutdown(self, runners: list[asyncio.Task[None]]) -> None:
        """Hands back jobs never started, lets running ones finish within the grace
        period, fails the rest back to the queue, and flushes every settlement."""
        for q in self._queues.values():
            while not q.buffer.empty():
                held = q.buffer.get_nowait()
                if held is not None:
                    self._settle(held, pb.ReleaseLeaseRequest())
                    q.outstanding -= 1
            for _ in range(q.concurrency):
                q.buffer.put_nowait(None)
        _, pending = await asyncio.wait(runners, timeout=self.grace_period)
        if pending:
            log.warning("grace period over: handing back %d running jobs", len(pending))
            for held in list(self._held.values()):
                self._stop_handler(held, "shutdown")
            await asyncio.wait(pending)
        while self._settlements or self._settling:
            self._settle_wake.set()
            await asyncio.sleep(self.settle_linger)

    # -- leasing --------------------------------------------------------------------

    async def _lease_loop(self, q: _Queue) -> None:
        part = f"lease {q.name}"
        backoff = RetryBackoff()
        while not self._stopping.is_set():
            room = q.capacity - q.outstanding
            if room <= 0:
                q.room.clear()
                await _first(q.room.wait(), self._stopping.wait())
                continue
            request = pb.LeaseRequest(
                queue=q.name,
                max_jobs=min(room, 1000),
                wait=duration(self.lease_wait),
                worker_id=self.worker_id,
            )
            started_ns = time.time_ns()
            # Not retried inside the call: the backoff below is the one policy, and it
            # shows in health from the first failure.
            call = asyncio.ensure_future(
                self.client.call(
                    self.client.stub.Lease,
                    request,
                    idempotent=False,
                    timeout_s=self.lease_wait + 10,
                )
            )
            await _first(asyncio.shield(call), self._stopping.wait())
            if not call.done():
                # Stopping mid long-poll: cancel it; the broker hands back anything it
                # leased for a cancelled call.
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError, JobwireError):
                    await call
                break
            try:
                reply = call.result()
            except Exception as err:
                # Never give up: a worker must resume when the broker or Redis is back.
                delay = backoff.next(err)
                self._health.failed(part, err, delay)
                await _first(asyncio.sleep(delay), self._stopping.wait())
                continue
            backoff.reset()
            self._health.ok(part)
            jobs = [self._hold(q, leased) for leased in reply.jobs]
            if jobs and _trace.enabled():
                _trace.record_receive(q.name, started_ns, [j.trace_context for j in jobs])
            if not jobs and reply.HasField("retry_after"):
                # Rate limited: sleep until a job may be leased instead of asking again.
                pause = min(reply.retry_after.ToMilliseconds() / 1000, MAX_RETRY_AFTER_S)
                await _first(asyncio.sleep(pause), self._stopping.wait())

    def _hold(self, q: _Queue, leased: pb.LeasedJob) -> Job:
        job = Job(leased, self._wake_heartbeat)
        now = asyncio.get_running_loop().time()
        held = _Held(job, now + job.lease_duration_s * self.heartbeat_fraction, last_beat=now)
        self._held[job.id] = held
        if held.next_beat < self._next_wake:  # due before the heartbeat loop wakes up
            self._beat_now.set()
        q.outstanding += 1
        if self._stopping.is_set():
            self._settle(held, pb.ReleaseLeaseRequest())
            q.outstanding -= 1
        else:
            q.buffer.put_nowait(held)
        return job

    def _wake_heartbeat(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._beat_now.set)

    # -- running handlers -----------------------------------------------------------

    async def _runner(self, q: _Queue) -> None:
        clock = asyncio.get_running_loop().time
        runner = asyncio.current_task()
        assert runner is not None
        while (held := await q.buffer.get()) is not None:
            started = clock()
            try:
                await self._run_one(q, held, runner)
            finally:
                q.observe(clock() - started)
                q.outstanding -= 1
                q.room.set()

    async def _run_one(self, q: _Queue, held: _Held, runner: "asyncio.Task[Any]") -> None:
        if held.stop_reason:  # lost or cancelled while waiting in the buffer
            self._finish_stopped(held)
            return
        job = held.job
        with _trace.process(
            q.name, job.id, job.attempt, job.trace_context, self.trace_link_only
        ) as run:
            held.run = run
            held.span = job._span = run.span
            await self._invoke(q, held, runner)

    async def _invoke(self, q: _Queue, held: _Held, runner: "asyncio.Task[Any]") -> None:
        try:
            if q.is_async:
                # Runs inline; the runner task itself is cancelled if the lease is lost.
                held.task = runner
                result = await q.handler(held.job)
            else:
                # Copy the context so the process span is current in the thread too.
                call = contextvars.copy_context().run
                loop = asyncio.get_running_loop()
                held.task = loop.run_in_executor(self._executor, call, q.handler, held.job)
                result = await held.task
        except asyncio.CancelledError:
            held.task = None
            if not held.stop_reason:
                raise  # the worker itself is being torn down
            if q.is_async:
                runner.uncancel()
            self._finish_stopped(held)
            return
        except Exception as error:
            held.task = None
            job = held.job
            ends_job = isinstance(error, NonRetryable) or job.counted_attempts >= job.max_attempts
            _trace.failed(held.run, error, ends_job)
            self._settle(held, _failure(error))
            return
        held.task = None
        if held.stop_reason:
            self._finish_stopped(held)
            return
        data, ctype = (b"", "") if result is None else encode(result, None)
        self._settle(held, pb.CompleteRequest(result=data, result_content_type=ctype))

    def _stop_handler(self, held: _Held, reason: str) -> None:
        if held.stop_reason:
            return
        held.stop_reason = reason
        _trace.event(held.span, "jobwire.handler_stopped", reason=reason)
        held.job._cancelled = True
        if held.task is not None and not held.task.done():
            held.task.cancel()

    def _finish_stopped(self, held: _Held) -> None:
        if held.stop_reason == "lost":
            self._held.pop(held.job.id, None)  # someone else owns it now: send nothing
        elif held.stop_reason == "cancel":
            self._settle(
                held,
                pb.FailRequest(
                    error=job_pb2.JobError(type="Cancelled", message="cancellation was requested")
                ),
            )
        else:
            self._settle(
                held,
                pb.FailRequest(
                    error=job_pb2.JobError(type="WorkerShutdown", message="worker stopped"),
                    retry_delay=duration(0),
                ),
            )

    # -- heartbeats -----------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if now >= self._beat_retry_at:
                due = [h for h in self._held.values() if self._beat_due(h, now)]
                if due:
                    await self._beat(due)
                elif not self._held:
                    self._health.ok("heartbeat")  # no lease left that a failure could cost
            upcoming = [h.next_beat for h in self._held.values()]
            upcoming += [
                h.last_beat + self.progress_interval
                for h in self._held.values()
                if h.job._pending_progress is not None
            ]
            wake = max(min([*upcoming, now + 1.0]), self._beat_retry_at)
            wait = max(wake - loop.time(), self.progress_interval)
            self._next_wake = loop.time() + wait
            self._beat_now.clear()
            await _first(asyncio.sleep(wait), self._beat_now.wait())

    def _beat_due(self, held: _Held, now: float) -> bool:
        if held.stop_reason:
            return False
        has_progress = held.job._pending_progress is not None
        return held.next_beat <= now or (
            has_progress and now - held.last_beat >= self.progress_interval
        )

    async def _beat(self, due: list[_Held]) -> None:
        loop = asyncio.get_running_loop()
        beats: list[pb.HeartbeatRequest] = []
        taken: list[Progress | None] = []
        sent: asyncio.Future[None] | None = None
        for held in due:
            beat = pb.HeartbeatRequest(job_id=held.job.id, lease_token=held.job.lease_token)
            progress = held.job._take_progress()
            if progress is not None:
                beat.progress.CopyFrom(progress_to(progress))
                # A settlement of this job waits for this call: the progress goes first.
                held.progress_sent = sent = sent or loop.create_future()
            beats.append(beat)
            taken.append(progress)
        try:
            reply = await self.client.call(
                self.client.stub.HeartbeatBatch,
                pb.HeartbeatBatchRequest(heartbeats=beats),
                idempotent=False,  # retried by the loop, with the latest progress
            )
        except Exception as err:
            self._beat_failed(err, due, taken)
            return
        finally:
            if sent is not None:
                sent.set_result(None)
        self._beat_backoff.reset()
        self._beat_retry_at = 0.0
        self._health.ok("heartbeat")
        now = loop.time()
        for held, result in zip(due, reply.results, strict=True):
            _trace.event(held.span, "jobwire.heartbeat", ok=result.status.code == 0)
            held.last_beat = now
            held.next_beat = now + held.job.lease_duration_s * self.heartbeat_fraction
            if result.status.code != 0:
                log.warning("lease on %s lost: %s", held.job.id, result.status.message)
                self._stop_handler(held, "lost")
            elif result.cancel_requested:
                self._stop_handler(held, "cancel")

    def _beat_failed(
        self, error: BaseException, due: list[_Held], taken: list[Progress | None]
    ) -> None:
        """Retries soon whatever the error (leases must not lapse), but without the
        progress if that is what the broker refused (the only part of a heartbeat that
        can be invalid)."""
        delay = min(self._beat_backoff.next(error), HEARTBEAT_RETRY_S)
        self._beat_retry_at = asyncio.get_running_loop().time() + delay
        self._health.failed("heartbeat", error, delay)
        if isinstance(error, InvalidArgument):
            return
        for held, progress in zip(due, taken, strict=True):
            if held.job._pending_progress is None:  # unless newer progress came in
                held.job._pending_progress = progress

    # -- settling -------------------------------------------------------------------

    def _settle(
        self,
        held: _Held,
        outcome: pb.CompleteRequest | pb.FailRequest | pb.ReleaseLeaseRequest,
    ) -> None:
        outcome.job_id = held.job.id
        outcome.lease_token = held.job.lease_token
        if isinstance(outcome, pb.CompleteRequest):
            settlement = pb.Settlement(complete=outcome)
        elif isinstance(outcome, pb.ReleaseLeaseRequest):
            settlement = pb.Settlement(release=outcome)
        else:
            settlement = pb.Settlement(fail=outcome)
        self._settlements.append((settlement, held))
        self._settle_wake.set()

    async def _settle_loop(self) -> None:
        while True:
            await self._settle_wake.wait()
            await asyncio.sleep(self.settle_linger)  # let a batch gather
            self._settle_wake.clear()
            while self._settlements:
                batch, self._settlements = self._settlements[:1000], self._settlements[1000:]
                self._send_soon(batch)
                if len(self._settling) >= 4:
                    await asyncio.wait(self._settling, return_when=asyncio.FIRST_COMPLETED)

    def _send_soon(self, batch: list[tuple[pb.Settlement, _Held]]) -> None:
        task = asyncio.create_task(self._send_settlements(batch))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        task.add_done_callback(_report_crash)

    async def _send_settlements(self, batch: list[tuple[pb.Settlement, _Held]]) -> None:
        """Sends one SettleBatch, retried through any outage: a lease token is settled
        at most once, and a retry of a call that did land gets each item's first outcome
        again (a LEASE_LOST on a retry means the lease ran out meanwhile). Gives up only
        once the worker is stopping and its grace period is over (the leases expire and
        the broker retries those jobs)."""
        loop = asyncio.get_running_loop()
        request = pb.SettleBatchRequest(settlements=[s for s, _ in batch])
        queues = [held.job.queue for _, held in batch]
        links = [held.span.get_span_context() for _, held in batch]
        backoff = RetryBackoff()
        retried = False  # a SettleBatch failed without an answer: it may have landed
        reply = None
        while reply is None:
            sending = False
            try:
                await self._flush_progress(batch)
                sending = True
                with _trace.settle(queues, links):
                    reply = await self.client.call(
                        self.client.stub.SettleBatch, request, idempotent=False
                    )
            except Exception as err:
                if _refusal(err, len(batch)):
                    self._refused(batch, err)
                    return
                if self._stopping.is_set() and loop.time() >= self._settle_deadline:
                    log.error("gave up settling %d jobs (%s); leases will expire", len(batch), err)
                    break
                retried = retried or sending
                delay = backoff.next(err)
                self._health.failed("settle", err, delay)
                await asyncio.sleep(delay)
        if reply is not None:
            self._health.ok("settle")
        for i, (_, held) in enumerate(batch):
            self._held.pop(held.job.id, None)
            if reply is None:
                continue
            s = reply.results[i].status
            error = item_error(s.code, s.reason, s.message)
            if error is None:
                pass
            elif retried and isinstance(error, LeaseLost):
                log.info(
                    "%s: its lease ran out while the settlement was retried"
                    " (LEASE_LOST on a retry); the broker retries the job",
                    held.job.id,
                )
            else:
                log.warning("settling %s refused: %s", held.job.id, error)

    async def _flush_progress(self, batch: list[tuple[pb.Settlement, _Held]]) -> None:
        """Sends progress not yet sent for jobs about to be settled, before their
        settlement, so a report made just before returning reaches GetJob and watchers
        ahead of the final state. Costs a call only when some progress is pending."""
        helds = [held for _, held in batch]
        in_flight = {
            h.progress_sent
            for h in helds
            if h.progress_sent is not None and not h.progress_sent.done()
        }
        if in_flight:
            await asyncio.wait(in_flight)
        beats, taken = [], []
        for held in helds:
            progress = held.job._take_progress()
            if progress is not None:
                beats.append(
                    pb.HeartbeatRequest(
                        job_id=held.job.id,
                        lease_token=held.job.lease_token,
                        progress=progress_to(progress),
                    )
                )
                taken.append((held, progress))
        if not beats:
            return
        try:
            await self.client.call(
                self.client.stub.HeartbeatBatch,
                pb.HeartbeatBatchRequest(heartbeats=beats),
                idempotent=False,
            )
        except Exception as err:
            if isinstance(err, InvalidArgument):  # the progress was refused: settle without it
                log.error("progress of %d jobs refused: %s", len(beats), describe(err))
                return
            for held, progress in taken:
                if held.job._pending_progress is None:
                    held.job._pending_progress = progress
            raise

    def _refused(self, batch: list[tuple[pb.Settlement, _Held]], error: BaseException) -> None:
        """The whole call was refused (one bad item makes a batch INVALID_ARGUMENT; a
        batch too big to send is RESOURCE_EXHAUSTED): each settlement is sent alone, so
        only a bad one is refused; a result the broker refuses fails the attempt
        instead, with the broker's reason."""
        if len(batch) > 1:
            log.debug("%d settlements refused (%s): sending each alone", len(batch), error)
            for item in batch:
                self._send_soon([item])
            return
        ((settlement, held),) = batch
        if settlement.HasField("complete"):
            log.error("the result of %s was refused (%s): failing it", held.job.id, describe(error))
            message = f"the broker refused the job's result: {describe(error)}"
            failure = pb.FailRequest(
                job_id=held.job.id,
                lease_token=held.job.lease_token,
                error=job_pb2.JobError(type="SettlementRejected", message=message[:8000]),
            )
            self._send_soon([(pb.Settlement(fail=failure), held)])
            return
        log.error("settling %s refused (%s): its lease will expire", held.job.id, describe(error))
        self._held.pop(held.job.id, None)


def _refusal(error: BaseException, size: int) -> bool:
    """A settlement call that retrying as it is cannot fix."""
    too_big = isinstance(error, JobwireError) and error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    return isinstance(error, InvalidArgument) or (too_big and size > 1)


def _failure(error: BaseException) -> pb.FailRequest:
    failure = pb.FailRequest(
        error=job_pb2.JobError(
            type=type(error).__name__,
            message=str(error)[:8000],
            non_retryable=isinstance(error, NonRetryable),
        )
    )
    if isinstance(error, RetryAfter):
        failure.retry_delay.CopyFrom(duration(error.delay))
    if isinstance(error, RateLimited):
        failure.rate_limit_delay.CopyFrom(duration(error.delay))
    if not isinstance(error, NonRetryable | RetryAfter | RateLimited):
        log.warning("job failed: %s: %s", type(error).__name__, error, exc_info=error)
    return failure


async def _first(*aws: Awaitable[Any]) -> None:
    """Waits until the first of several awaitables finishes; cancels the others. Raises
    none of their errors: a caller reads the outcome of the one it cares about."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks)
        for t in tasks:
            if not t.cancelled():
                t.exception()  # retrieved: asyncio would log it as never retrieved


def _report_crash(task: "asyncio.Task[Any]") -> None:
    """A worker task that ends with an error is a bug in the SDK: say so, loudly."""
    if not task.cancelled() and task.exception() is not None:
        log.error("worker task %s crashed", task.get_name(), exc_info=task.exception())


__all__ = ["Handler", "Job", "NonRetryable", "RetryAfter", "Worker"]
