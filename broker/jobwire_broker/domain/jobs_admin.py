"""The job part of the admin service: listing jobs a page at a time, retrying, deleting
and promoting them, and dead-letter triage (groups, paced redrive, purge).

Paging and bulk operations walk a state's sorted set by *position* (score and member),
never by offset, so jobs entering or leaving the set between calls shift nothing. A bulk
operation fixes where it ends before it starts (the set's last member then, or a score
bound), so jobs that enter later, a retried job that dies again included, are left for
the next operation instead of keeping this one going. Each batch is one scan (which
jobs) and one change (those jobs, each only if still at the position the scan saw:
a compare-and-set), so a job that moved in between is skipped, never wrongly changed."""

import asyncio
import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..store import StoreUnavailable
from ..store.jobs_admin import (
    BULK_BATCH,
    GROUPS,
    SCAN_LIMIT,
    Bound,
    Change,
    DeadGroup,
    JobFilter,
    JobsAdminStore,
    Position,
    Source,
)
from .admin import AdminContext
from .broker import store_errors
from .errors import not_found, store_unavailable, wrong_state
from .ids import SEQ_RE, job_id
from .model import JobRecord, JobState

__all__ = [
    "BULK_BATCH",
    "DELETABLE",
    "RETRYABLE",
    "SCAN_LIMIT",
    "DeadGroup",
    "GroupPage",
    "JobFilter",
    "JobPage",
    "JobsAdmin",
    "PageTokenError",
    "Position",
    "RedriveProgress",
    "page_token",
    "parse_page_token",
    "redrive_batch",
]

# Counting without a filter reads no member, only ranks: no need to cut it in pieces.
UNBOUNDED = 1 << 50
# A ListJobs call looks at most at this many jobs (the proto's promise), over several
# script calls of BULK_BATCH read and SCAN_LIMIT examined each.
PAGE_EXAMINE = 5_000

RETRYABLE = (JobState.DEAD, JobState.CANCELLED)
DELETABLE = tuple(s for s in JobState if s is not JobState.ACTIVE)


# -- page tokens -------------------------------------------------------------------------

TOKEN_VERSION = 1
MAX_TOKEN_CHARS = 1_024
# A score as Redis writes one (and reads it back unchanged).
SCORE_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?inf", re.ASCII)
FINGERPRINT_MEMBER_RE = re.compile(r"[0-9a-f]{16}", re.ASCII)


class PageTokenError(ValueError):
    """A page token that is not one this list handed out."""


def page_token(queue: str, scope: str, reverse: bool, at: Position) -> str:
    """An opaque token for the position `at` of a list: queue, what is listed (a state,
    or "groups") and the direction go in it, so it only works for the same list."""
    body = {"v": TOKEN_VERSION, "q": queue, "s": scope, "r": reverse, "p": [at.score, at.member]}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_page_token(token: str, queue: str, scope: str, reverse: bool) -> Position:
    """The position in a token from page_token(), which must be for the same list."""
    if len(token) > MAX_TOKEN_CHARS:
        raise PageTokenError("is not a page token this list handed out")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        score, member = body["p"]
        valid = (
            body["v"] == TOKEN_VERSION
            and isinstance(score, str)
            and isinstance(member, str)
            and SCORE_RE.fullmatch(score) is not None
        )
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise PageTokenError("is not a page token this list handed out") from None
    member_re = FINGERPRINT_MEMBER_RE if scope == "groups" else SEQ_RE
    if not valid or member_re.fullmatch(member) is None:
        raise PageTokenError("is not a page token this list handed out")
    if (body.get("q"), body.get("s"), body.get("r")) != (queue, scope, reverse):
        raise PageTokenError("belongs to another list: use it with the same queue, state and order")
    return Position(score, member)


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobPage:
    """Jobs with their positions; `next` is None after the last page."""

    jobs: list[tuple[JobRecord, Position]]
    next: Position | None


@dataclass(frozen=True, slots=True)
class GroupPage:
    groups: list[tuple[DeadGroup, Position]]
    next: Position | None


@dataclass(frozen=True, slots=True)
class RedriveProgress:
    matched: int
    redriven: int
    done: bool


def redrive_batch(rate: float) -> int:
    """Jobs per batch of a redrive at `rate` jobs/s (0: unpaced): a tenth of a second's
    worth, so the pace is smooth, within [1, BULK_BATCH]."""
    if rate <= 0:
        return BULK_BATCH
    return min(BULK_BATCH, max(1, int(rate / 10)))


def _source(state: JobState, job_filter: JobFilter) -> tuple[Source, JobFilter]:
    """Where to look for jobs of `state` matching the filter, and what is left of the
    filter to check there: dead jobs of one fingerprint are read from their group."""
    if state is JobState.DEAD and job_filter.fingerprint:
        return Source(state, job_filter.fingerprint), replace(job_filter, fingerprint="")
    return Source(state), job_filter


Changer = Callable[[list[Position]], Awaitable[Change]]


class JobsAdmin:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx
        self.jobs = JobsAdminStore(ctx.store)

    # -- listing --------------------------------------------------------------------

    @store_errors
    async def list_jobs(
        self,
        queue: str,
        state: JobState,
        *,
        reverse: bool,
        page_size: int,
        after: Position | None,
        job_filter: JobFilter,
        payloads: bool,
        max_bytes: int,
    ) -> JobPage:
        """One page: up to page_size jobs after `after`, looking at PAGE_EXAMINE at most."""
        await self.ctx.require_queue(queue)
        source, rest = _source(state, job_filter)
        items, positions, after = await self._page(
            queue,
            source,
            "jobs",
            after,
            reverse=reverse,
            job_filter=rest,
            page_size=page_size,
            examine=PAGE_EXAMINE,
            payloads=payloads,
            max_bytes=max_bytes,
        )
        return JobPage(list(zip(items, positions, strict=True)), after)

    @store_errors
    async def dead_groups(
        self, queue: str, page_size: int, after: Position | None, max_bytes: int
    ) -> GroupPage:
        """Dead-letter groups, most recently seen first."""
        await self.ctx.require_queue(queue)
        items, positions, after = await self._page(
            queue,
            GROUPS,
            "groups",
            after,
            reverse=True,
            page_size=page_size,
            examine=page_size,
            max_bytes=max_bytes,
        )
        return GroupPage(list(zip(items, positions, strict=True)), after)

    async def _page(
        self,
        queue: str,
        source: Source | str,
        mode: str,
        after: Position | None,
        *,
        page_size: int,
        examine: int,
        max_bytes: int,
        **scan_args: Any,
    ) -> tuple[list[Any], list[Position], Position | None]:
        """A page read in scans of at most BULK_BATCH items and SCAN_LIMIT members each,
        so no script call holds Redis for long: each goes on strictly after the last,
        as the next page would. Ends at page_size items, `examine` members looked at, the
        reply's max_bytes, or the end of the set (then the position is None)."""
        items: list[Any] = []
        positions: list[Position] = []
        examined = used = 0
        while True:
            want = min(BULK_BATCH, page_size - len(items))
            look = min(SCAN_LIMIT, examine - examined)
            scan = await self.jobs.scan(
                queue,
                source,
                mode,
                after=after,
                want=want,
                examine=look,
                max_bytes=max_bytes - used,
                may_be_empty=bool(items),
                **scan_args,
            )
            items += scan.items
            positions += scan.positions
            examined, used, after = examined + scan.examined, used + scan.bytes, scan.next
            out_of_bytes = len(scan.items) < want and scan.examined < look
            if after is None or out_of_bytes or len(items) >= page_size:
                return items, positions, after
            if examined >= examine or (max_bytes and used >= max_bytes):
                return items, positions, after

    # -- changes by id: all or nothing ----------------------------------------------

    @store_errors
    async def retry_ids(self, queue: str, seqs: Sequence[int]) -> int:
        await self.ctx.require_queue(queue)
        change = await self.jobs.retry(queue, _unique(seqs))
        _raise_refused(queue, change, "dead or cancelled")
        return change.done

    @store_errors
    async def delete_ids(self, queue: str, seqs: Sequence[int]) -> int:
        await self.ctx.require_queue(queue)
        change = await self.jobs.delete(queue, _unique(seqs))
        _raise_refused(queue, change, "scheduled, ready, completed, dead or cancelled")
        return change.done

    @store_errors
    async def promote_ids(self, queue: str, seqs: Sequence[int]) -> int:
        await self.ctx.require_queue(queue)
        change = await self.jobs.promote(queue, _unique(seqs))
        _raise_refused(queue, change, "scheduled")
        return change.done

    # -- changes by state: batch after batch -----------------------------------------

    @store_errors
    async def retry_state(self, queue: str, state: JobState, job_filter: JobFilter) -> int:
        assert state in RETRYABLE
        await self.ctx.require_queue(queue)
        source, rest = _source(state, job_filter)
        return await self._bulk(queue, source, rest, self._at(self.jobs.retry, queue, state))

    @store_errors
    async def delete_state(self, queue: str, state: JobState, job_filter: JobFilter) -> int:
        assert state in DELETABLE
        await self.ctx.require_queue(queue)
        source, rest = _source(state, job_filter)
        return await self._bulk(queue, source, rest, self._at(self.jobs.delete, queue, state))

    @store_errors
    async def promote_all(self, queue: str) -> int:
        await self.ctx.require_queue(queue)
        changer = self._at(self.jobs.promote, queue, JobState.SCHEDULED)
        return await self._bulk(queue, Source(JobState.SCHEDULED), JobFilter(), changer)

    # -- dead letters -----------------------------------------------------------------

    @store_errors
    async def purge(self, queue: str, fingerprint: str, older_than_ms: int, dry_run: bool) -> int:
        """Deletes the dead jobs of a group (or all), only those dead longer than
        older_than_ms when it is set; with dry_run, counts them."""
        await self.ctx.require_queue(queue)
        source = Source(JobState.DEAD, fingerprint)
        until = None
        if older_than_ms:
            now_ms = (await self.jobs.scan(queue, source, "count", examine=0)).now_ms
            until = Bound(str(now_ms - older_than_ms - 1))
        if dry_run:
            return await self._count(queue, source, JobFilter(), until)
        changer = self._at(self.jobs.delete, queue, JobState.DEAD)
        return await self._bulk(queue, source, JobFilter(), changer, until)

    async def redrive(
        self,
        queue: str,
        fingerprint: str,
        job_filter: JobFilter,
        rate: float,
        dry_run: bool,
        limit: int,
    ) -> AsyncIterator[RedriveProgress]:
        """Sends dead jobs back to ready, oldest first, at most `rate` a second (0: as
        fast as batches go), at most `limit` (0: all). Yields the count matched first,
        then progress after each batch, and last a message with `done`. Stopping the
        iteration stops the redrive between batches."""
        try:
            async for progress in self._redrive(
                queue, fingerprint, job_filter, rate, dry_run, limit
            ):
                yield progress
        except StoreUnavailable as exc:
            raise store_unavailable(str(exc)) from exc

    async def _redrive(
        self,
        queue: str,
        fingerprint: str,
        job_filter: JobFilter,
        rate: float,
        dry_run: bool,
        limit: int,
    ) -> AsyncIterator[RedriveProgress]:
        await self.ctx.require_queue(queue)
        source, rest = _source(JobState.DEAD, job_filter)
        if fingerprint:
            # The request's fingerprint picks the group; the filter's, if it differs,
            # still has to match too (so nothing does).
            source = Source(JobState.DEAD, fingerprint)
            rest = job_filter if job_filter.fingerprint not in ("", fingerprint) else rest
        last = (await self.jobs.scan(queue, source, "count", examine=0)).last
        until = Bound(last.score, last.member) if last else None
        matched = 0 if until is None else await self._count(queue, source, rest, until)
        if limit:
            matched = min(matched, limit)
        if dry_run or until is None:
            yield RedriveProgress(matched, 0, True)
            return
        yield RedriveProgress(matched, 0, False)
        async for progress in self._paced(queue, source, rest, until, rate, limit, matched):
            yield progress

    async def _paced(
        self,
        queue: str,
        source: Source,
        rest: JobFilter,
        until: Bound,
        rate: float,
        limit: int,
        matched: int,
    ) -> AsyncIterator[RedriveProgress]:
        """The redrive proper, paced by a token bucket that fills at `rate` jobs/s and
        holds one batch: each batch waits until the jobs before it have been paid for, so
        a slow batch is not followed by a burst beyond one batch."""
        loop = asyncio.get_running_loop()
        batch = redrive_batch(rate)
        redriven, after, due = 0, None, loop.time()
        while not limit or redriven < limit:
            if rate > 0 and (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            sent = loop.time()
            want = min(batch, limit - redriven) if limit else batch
            scan = await self.jobs.scan(
                queue, source, "positions", after=after, until=until, job_filter=rest, want=want
            )
            n = 0
            if scan.positions:
                n = (await self.jobs.retry(queue, at=(JobState.DEAD, scan.positions))).done
                redriven += n
                yield RedriveProgress(matched, redriven, False)
            if rate > 0:
                due = max(due + n / rate, sent)
            if scan.next is None:
                break
            after = scan.next
        yield RedriveProgress(matched, redriven, True)

    # -- the walk ---------------------------------------------------------------------

    def _at(
        self,
        change: Callable[..., Awaitable[Change]],
        queue: str,
        state: JobState,
    ) -> Changer:
        async def at(positions: list[Position]) -> Change:
            return await change(queue, at=(state, positions))

        return at

    async def _bulk(
        self,
        queue: str,
        source: Source,
        rest: JobFilter,
        change: Changer,
        until: Bound | None = None,
    ) -> int:
        """Changes every job of `source` that matches `rest`, up to `until` (else up to
        the set's last member when the walk starts), BULK_BATCH per call."""
        done, after = 0, None
        while True:
            scan = await self.jobs.scan(
                queue,
                source,
                "positions",
                after=after,
                until=until,
                job_filter=rest,
                want=BULK_BATCH,
            )
            if until is None:
                if scan.last is None:
                    return done
                until = Bound(scan.last.score, scan.last.member)
            if scan.positions:
                done += (await change(scan.positions)).done
            if scan.next is None:
                return done
            after = scan.next

    async def _count(self, queue: str, source: Source, rest: JobFilter, until: Bound | None) -> int:
        total, after = 0, None
        examine = SCAN_LIMIT if rest else UNBOUNDED
        while True:
            scan = await self.jobs.scan(
                queue, source, "count", after=after, until=until, job_filter=rest, examine=examine
            )
            total += scan.matched
            if scan.next is None:
                return total
            after = scan.next


def _unique(seqs: Sequence[int]) -> list[int]:
    """The seqs once each, in order: a job named twice is changed once."""
    return list(dict.fromkeys(seqs))


def _raise_refused(queue: str, change: Change, wanted: str) -> None:
    if not change.refused_seq:
        return
    refused = job_id(queue, change.refused_seq)
    if change.refused_state is None:
        raise not_found(refused)
    raise wrong_state(refused, change.refused_state.value, wanted)
