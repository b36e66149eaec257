"""The broker's behaviour on top of the store: long-polling leases, batches that span
queues, and event streams for watchers. Store outcomes end here: callers get results,
or per item the domain error each outcome amounts to (errors.py)."""

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, ParamSpec, TypeVar

from ..store import DeadlineRefused, Store, StoreUnavailable
from ..store.notify import Notifier
from . import deadlines, flows
from .errors import (
    JobwireError,
    item_error,
    job_finished,
    job_too_large,
    not_found,
    shutting_down,
    store_unavailable,
)
from .fingerprint import fingerprinted
from .hooks import Hooks, NoHooks
from .ids import job_id
from .limits import DEFAULT_REPLY_BYTES
from .model import (
    CompleteItem,
    Enqueued,
    Event,
    FailItem,
    FailResult,
    HeartbeatItem,
    HeartbeatResult,
    ItemResult,
    JobRecord,
    JobState,
    LeaseBatch,
    NewJob,
    Outcome,
    ReleaseItem,
    TraceContext,
)

P = ParamSpec("P")
T = TypeVar("T")
T_contra = TypeVar("T_contra")
R = TypeVar("R", ItemResult, FailResult, HeartbeatResult)

RECHECK_S = 2.0  # long-poll re-check in case a wake-up was missed
OFFLINE_RECHECK_S = 0.25  # faster while pub/sub is down, to recover quickly
WATCH_RECHECK_S = 5.0
EVENT_PAGE = 100
DELETED = "deleted"  # the last event of a watched job that was deleted (lib.lua remove_job)


def store_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Turns an unreachable store into the domain's UNAVAILABLE error."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except StoreUnavailable as exc:
            raise store_unavailable(str(exc)) from exc

    return wrapper


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One message of a job's event stream. `job` is the whole job for a snapshot and
    for the terminal event; `event` is set for everything but a snapshot."""

    id: str
    job: JobRecord | None
    event: Event | None


@dataclass(frozen=True, slots=True)
class Settlement:
    """A Complete, a Fail or a release of one leased job, for SettleBatch."""

    queue: str
    complete: CompleteItem | None = None
    fail: FailItem | None = None
    release: ReleaseItem | None = None


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """One item of a batch: the store's result, and the error it amounts to, if any."""

    result: R
    error: JobwireError | None


def only(answers: Sequence[Answer[R]]) -> R:
    """The result of a one-item call; raises the item's error."""
    (answer,) = answers
    if answer.error is not None:
        raise answer.error
    return answer.result


ItemKind = HeartbeatItem | CompleteItem | FailItem | ReleaseItem


def _answers(items: Sequence[tuple[str, ItemKind]], results: Sequence[R]) -> list[Answer[R]]:
    return [
        Answer(r, item_error(r.outcome, job_id(queue, item.seq), r.reason))
        for (queue, item), r in zip(items, results, strict=True)
    ]


SettleAnswer = Answer[ItemResult] | Answer[FailResult]


class Broker:
    def __init__(self, store: Store, notifier: Notifier, hooks: Hooks | None = None) -> None:
        self.store = store
        self.notifier = notifier
        self.hooks = hooks or NoHooks()
        self.closing = asyncio.Event()
        self._sleepers: set[asyncio.Event] = set()

    def close(self) -> None:
        """Ends long-polls (empty) and watch streams (UNAVAILABLE) for a shutdown."""
        self.closing.set()
        for event in self._sleepers:
            event.set()

    async def _wait(self, event: asyncio.Event, seconds: float) -> None:
        """Waits for `event`, at most `seconds`, and no longer once closing."""
        self._sleepers.add(event)
        try:
            if not self.closing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), seconds)
        finally:
            self._sleepers.discard(event)

    @store_errors
    async def enqueue(
        self,
        queue: str,
        jobs: Sequence[NewJob],
        caller: TraceContext | None = None,
        field: str = "job",
    ) -> list[Enqueued]:
        """Adds jobs. `caller` is the trace context the call's metadata carried: jobs
        without a context of their own join that trace. `field` names the jobs in
        errors ("jobs": `jobs[i]`)."""
        jobs, token = self.hooks.enqueuing(queue, jobs, caller)
        try:
            if any(job.depends_on for job in jobs):
                results = await flows.enqueue(self.store, queue, jobs, field)
            else:
                results = await self.store.enqueue(queue, jobs)
        except DeadlineRefused as exc:
            error = deadlines.refused(exc, [] if field == "jobs" else [field])
            self.hooks.enqueue_failed(token, error)
            raise error from None
        except Exception as exc:
            self.hooks.enqueue_failed(token, exc)
            raise
        self.hooks.enqueued(queue, token, results)
        return results

    @store_errors
    async def enqueue_flow(
        self, jobs: Sequence[flows.FlowJob], caller: TraceContext | None = None
    ) -> list[Enqueued]:
        return await flows.enqueue_flow(self.store, self.hooks, jobs, caller)

    @store_errors
    async def dependencies(self, queue: str, seq: int) -> tuple[list[JobRecord], list[str]]:
        return await flows.dependencies(self.store, queue, seq)

    @store_errors
    async def lease(
        self,
        queue: str,
        max_jobs: int,
        wait_s: float,
        max_bytes: int = DEFAULT_REPLY_BYTES,
        worker_id: str = "",
    ) -> LeaseBatch:
        """Leases up to max_jobs whose reply fits in max_bytes, waiting up to wait_s for
        the first one to arrive (and through a rate limit: the batch's retry_after_ms says
        how long one held ready jobs back). A first job that alone does not fit stays
        ready and the call fails with JOB_TOO_LARGE: leasing it would strand it."""
        take = functools.partial(
            self._lease, queue, max_jobs, max_bytes=max_bytes, worker_id=worker_id
        )
        batch = await take()
        if not batch.jobs and not batch.too_large and wait_s > 0:
            batch = await self._wait_and_lease(queue, take, wait_s)
        if batch.too_large:
            raise job_too_large(
                job_id(queue, batch.too_large.seq), batch.too_large.reply_bytes, max_bytes
            )
        return batch

    @store_errors
    async def release_leased(self, queue: str, jobs: Sequence[JobRecord]) -> None:
        """Hands back leases nobody will hold (a reply that was never delivered); their
        attempts do not count against max_attempts."""
        if jobs:
            await self.store.release(queue, [ReleaseItem(j.seq, j.token) for j in jobs])

    async def _lease(
        self,
        queue: str,
        max_jobs: int,
        waiting_flag_ms: int = 0,
        max_bytes: int = 0,
        worker_id: str = "",
    ) -> LeaseBatch:
        """One lease script. If the call is cancelled meanwhile (the worker stopped or went
        away), what the script leased is handed back at once instead of waiting out its
        lease: nobody would ever see those tokens."""
        leasing = asyncio.ensure_future(
            self.store.lease(
                queue, max_jobs, waiting_flag_ms, max_bytes or DEFAULT_REPLY_BYTES, worker_id
            )
        )
        start = time.time_ns()
        try:
            batch = await asyncio.shield(leasing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                orphans = (await leasing).jobs
                if orphans:
                    await self.store.release(queue, [ReleaseItem(j.seq, j.token) for j in orphans])
            raise
        self.hooks.leased(queue, batch.jobs, start)
        return batch

    async def _wait_and_lease(
        self, queue: str, take: Callable[..., Awaitable[LeaseBatch]], wait_s: float
    ) -> LeaseBatch:
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        woken = asyncio.Event()
        channel = self.store.keys(queue).wake_channel

        def on_wake(_: bytes) -> None:
            woken.set()

        subscribed = await self.notifier.listen(channel, on_wake, within_s=min(wait_s, 1.0))
        last = LeaseBatch([], None)  # the last empty lease: its retry_after goes back
        try:
            while not self.closing.is_set():
                remaining = end - loop.time()
                if remaining <= 0:
                    return last
                woken.clear()
                timeout = RECHECK_S if subscribed else OFFLINE_RECHECK_S
                try:
                    batch = await take(waiting_flag_ms=int(remaining * 1000) + 1000)
                except StoreUnavailable:
                    if end - loop.time() <= timeout:
                        raise
                    subscribed = False
                else:
                    if batch.jobs or batch.too_large:
                        return batch
                    if batch.next_due_in_ms is not None:
                        timeout = min(timeout, batch.next_due_in_ms / 1000 + 0.001)
                    if batch.retry_after_ms is not None:  # a rate limit: lease once it lets
                        timeout = min(timeout, batch.retry_after_ms / 1000 + 0.001)
                    last = batch
                    subscribed = subscribed or self.notifier.connected.is_set()
                await self._wait(woken, min(timeout, remaining))
            return LeaseBatch([], None)
        finally:
            self.notifier.unlisten(channel, on_wake)

    @store_errors
    async def heartbeat(
        self, items: Sequence[tuple[str, HeartbeatItem]]
    ) -> list[Answer[HeartbeatResult]]:
        return _answers(items, await _per_queue(items, self.store.heartbeat))

    @store_errors
    async def complete(self, items: Sequence[tuple[str, CompleteItem]]) -> list[Answer[ItemResult]]:
        start = time.time_ns()
        results = await _per_queue(items, self.store.complete)
        self.hooks.settled(items, results, start)
        return _answers(items, results)

    @store_errors
    async def fail(self, items: Sequence[tuple[str, FailItem]]) -> list[Answer[FailResult]]:
        items = [(queue, _fingerprinted(item)) for queue, item in items]
        start = time.time_ns()
        results = await _per_queue(items, self.store.fail)
        self.hooks.settled(items, results, start)
        return _answers(items, results)

    @store_errors
    async def release(self, items: Sequence[tuple[str, ReleaseItem]]) -> list[Answer[FailResult]]:
        """Hands leases back at the worker's word: ready again, the attempt uncounted."""
        start = time.time_ns()
        results = await _per_queue(items, self.store.release)
        self.hooks.settled(items, results, start)
        return _answers(items, results)

    async def settle(self, items: Sequence[Settlement]) -> list[SettleAnswer]:
        """Completes, fails and releases, in one call per kind and queue."""
        completes = [(i, (s.queue, s.complete)) for i, s in enumerate(items) if s.complete]
        fails = [(i, (s.queue, s.fail)) for i, s in enumerate(items) if s.fail]
        releases = [(i, (s.queue, s.release)) for i, s in enumerate(items) if s.release]
        done, failed, released = await asyncio.gather(
            self.complete([c for _, c in completes]),
            self.fail([f for _, f in fails]),
            self.release([r for _, r in releases]),
        )
        answers: list[SettleAnswer | None] = [None] * len(items)
        for (i, _), c in zip(completes, done, strict=True):
            answers[i] = c
        for (i, _), f in zip(fails, failed, strict=True):
            answers[i] = f
        for (i, _), r in zip(releases, released, strict=True):
            answers[i] = r
        return [a for a in answers if a is not None]

    @store_errors
    async def get(self, queue: str, seq: int) -> JobRecord:
        job = await self.store.get(queue, seq)
        if job is None:
            raise not_found(job_id(queue, seq))
        return job

    @store_errors
    async def cancel(self, queue: str, seq: int) -> JobState:
        result = await self.store.cancel(queue, seq)
        if result.outcome is Outcome.NOT_FOUND or result.state is None:
            raise not_found(job_id(queue, seq))
        if result.outcome is Outcome.JOB_FINISHED:
            raise job_finished(job_id(queue, seq), result.state)
        return result.state

    async def watch(self, queue: str, seq: int, after_id: str) -> AsyncIterator[WatchEvent]:
        """A job's events: a snapshot first (unless resuming), then each change, until a
        terminal state; NOT_FOUND when the job is deleted meanwhile."""
        changed = asyncio.Event()
        channel = self.store.keys(queue).events_channel
        wanted = str(seq).encode()

        def on_event(data: bytes) -> None:
            if data in (wanted, b""):
                changed.set()

        await self.notifier.listen(channel, on_event)
        try:
            async for event in self._watch(queue, seq, after_id, changed):
                yield event
        except StoreUnavailable as exc:
            raise store_unavailable(str(exc)) from exc
        finally:
            self.notifier.unlisten(channel, on_event)

    async def _watch(
        self, queue: str, seq: int, after_id: str, changed: asyncio.Event
    ) -> AsyncIterator[WatchEvent]:
        watched = await self.store.watch(queue, seq)
        if watched is None:
            raise not_found(job_id(queue, seq))
        job, cursor = watched
        if not after_id:
            yield WatchEvent(cursor, job, None)
            if job.state.terminal:
                return
        else:
            cursor = after_id
        while not self.closing.is_set():
            changed.clear()
            events = await self.store.events_after(queue, seq, cursor, EVENT_PAGE)
            for event in events:
                cursor = event.id
                if event.kind == DELETED:
                    raise not_found(job_id(queue, seq))
                if event.kind == "state" and event.state.terminal:
                    yield WatchEvent(event.id, await self.store.get(queue, seq), event)
                    return
                yield WatchEvent(event.id, None, event)
            if not events and job.state.terminal:
                yield WatchEvent(cursor, job, None)  # resumed after the end
                return
            if not events:
                await self._wait(changed, WATCH_RECHECK_S)
        raise shutting_down()  # the client resumes from its last event elsewhere


def _fingerprinted(item: FailItem) -> FailItem:
    error, template = fingerprinted(item.error)
    return dataclasses.replace(item, error=error, template=template)


async def _per_queue(
    items: Sequence[tuple[str, T_contra]],
    call: Callable[[str, list[T_contra]], Awaitable[list[T]]],
) -> list[T]:
    """Runs one script call per queue (concurrently) and returns results in item order."""
    by_queue: dict[str, list[int]] = defaultdict(list)
    for index, (queue, _) in enumerate(items):
        by_queue[queue].append(index)
    outcomes = await asyncio.gather(
        *(call(queue, [items[i][1] for i in idx]) for queue, idx in by_queue.items())
    )
    results: list[T | None] = [None] * len(items)
    for idx, outcome in zip(by_queue.values(), outcomes, strict=True):
        for i, result in zip(idx, outcome, strict=True):
            results[i] = result
    return [r for r in results if r is not None]
