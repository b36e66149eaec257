"""AdminService RPCs about jobs (see api/admin.py, which combines the parts): ListJobs,
RetryJobs, DeleteJobs, PromoteJobs and dead-letter triage (ListDeadLetterGroups,
RedriveDeadLetters, PurgeDeadLetters). Each validates the whole request first, so a bad
one is rejected with every problem named and nothing written."""

from collections.abc import AsyncIterator, Collection
from typing import Any

import grpc
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import job_pb2

from ..domain.admin import AdminContext
from ..domain.fingerprint import is_fingerprint
from ..domain.jobs_admin import (
    DELETABLE,
    RETRYABLE,
    JobFilter,
    JobsAdmin,
    PageTokenError,
    Position,
    parse_page_token,
)
from ..domain.limits import DAY_MS, Defaults, Limits
from ..domain.model import JobState
from . import job_admin_responses as out
from .errors import streaming, unary
from .requests import Parser
from .responses import STATES

Context = grpc.aio.ServicerContext[Any, Any]

JOB_STATES: dict[int, JobState] = {int(number): state for state, number in STATES.items()}
LIST_PAGE_SIZE = 50
GROUP_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1_000
# By ids a change is one script call, all or none: small enough to hold Redis briefly.
MAX_JOB_IDS = 100
MAX_RATE = 100_000
MAX_LIMIT = 1 << 53
MAX_OLDER_THAN_MS = 100 * 365 * DAY_MS


def _names(states: Collection[JobState]) -> str:
    names = [job_pb2.JobState.Name(STATES[s]) for s in states]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _state(p: Parser, field: str, value: int, allowed: Collection[JobState]) -> JobState | None:
    """A JobState of `allowed`; a violation (and None) for any other value."""
    state = JOB_STATES.get(value)
    if value == job_pb2.JOB_STATE_UNSPECIFIED:
        p.bad(field, "is required")
    elif state is None:
        p.bad(field, f"is not a known JobState: {value}")
    elif state not in allowed:
        p.bad(field, f"must be {_names(allowed)}")
    else:
        return state
    return None


def _filter(p: Parser, field: str, f: apb.JobFilter) -> JobFilter:
    lim = p.limits
    p.size(f"{field}.error_type", f.error_type, lim.max_key_bytes)
    p.size(f"{field}.header_key", f.header_key, lim.max_header_key_bytes)
    p.size(f"{field}.header_value", f.header_value, lim.max_header_value_bytes)
    if f.header_value and not f.header_key:
        p.bad(f"{field}.header_value", f"needs {field}.header_key")
    _fingerprint(p, f"{field}.error_fingerprint", f.error_fingerprint)
    return JobFilter(f.error_type, f.header_key, f.header_value, f.error_fingerprint)


def _fingerprint(p: Parser, field: str, value: str) -> str:
    if value and not is_fingerprint(value):
        p.bad(field, "must be a DeadLetterGroup.fingerprint: 16 lowercase hex digits")
    return value


def _page_size(p: Parser, field: str, value: int, default: int) -> int:
    p.in_range(field, value, 0, MAX_PAGE_SIZE)
    return value or default


def _token(
    p: Parser, field: str, token: str, queue: str, scope: str, reverse: bool
) -> Position | None:
    if not token:
        return None
    try:
        return parse_page_token(token, queue, scope, reverse)
    except PageTokenError as err:
        p.bad(field, str(err))
        return None


def _job_ids(p: Parser, queue: str, ids: Collection[str]) -> list[int]:
    """The sequence numbers of job ids that must all be of `queue`."""
    if len(ids) > MAX_JOB_IDS:
        p.bad("job_ids", f"must hold at most {MAX_JOB_IDS} ids, got {len(ids)}")
        return []
    seqs = []
    for i, raw in enumerate(ids):
        of, seq = p.job_id(f"job_ids[{i}]", raw)
        if of and of != queue:
            p.bad(f"job_ids[{i}]", f"must be a job of queue {queue!r}, not of {of!r}")
        seqs.append(seq)
    return seqs


def _selection(
    p: Parser,
    request: apb.RetryJobsRequest | apb.DeleteJobsRequest,
    allowed: Collection[JobState],
) -> tuple[list[int], JobState | None, JobFilter]:
    """RetryJobs' and DeleteJobs' choice: job ids, or else a state (and a filter)."""
    seqs = _job_ids(p, request.queue, request.job_ids)
    job_filter = _filter(p, "filter", request.filter)
    state = None
    if request.job_ids:
        if request.state != job_pb2.JOB_STATE_UNSPECIFIED:
            p.bad("state", "must be unset when job_ids are given")
        if job_filter:
            p.bad("filter", "applies only with state, not with job_ids")
    elif request.state == job_pb2.JOB_STATE_UNSPECIFIED:
        p.bad("state", "is required when no job_ids are given")
    else:
        state = _state(p, "state", request.state, allowed)
    return seqs, state, job_filter


class JobRpcs:
    ctx: AdminContext
    limits: Limits
    defaults: Defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)

    def _jobs(self) -> JobsAdmin:
        return JobsAdmin(self.ctx)

    @unary
    async def ListJobs(
        self, request: apb.ListJobsRequest, context: Context
    ) -> apb.ListJobsResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        state = _state(p, "state", request.state, list(JobState))
        if request.order not in apb.ListOrder.values():
            p.bad("order", f"is not a known ListOrder: {request.order}")
        reverse = request.order == apb.LIST_ORDER_NEWEST_FIRST
        page_size = _page_size(p, "page_size", request.page_size, LIST_PAGE_SIZE)
        job_filter = _filter(p, "filter", request.filter)
        scope = state.value if state else ""
        after = _token(p, "page_token", request.page_token, queue, scope, reverse)
        p.done()
        assert state is not None
        page = await self._jobs().list_jobs(
            queue,
            state,
            reverse=reverse,
            page_size=page_size,
            after=after,
            job_filter=job_filter,
            payloads=request.include_payloads,
            max_bytes=out.SCRIPT_REPLY_BYTES,
        )
        return out.job_page(queue, scope, reverse, page)

    @unary
    async def RetryJobs(
        self, request: apb.RetryJobsRequest, context: Context
    ) -> apb.RetryJobsResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        seqs, state, job_filter = _selection(p, request, RETRYABLE)
        p.done()
        jobs = self._jobs()
        if state is None:
            return apb.RetryJobsResponse(retried=await jobs.retry_ids(queue, seqs))
        return apb.RetryJobsResponse(retried=await jobs.retry_state(queue, state, job_filter))

    @unary
    async def DeleteJobs(
        self, request: apb.DeleteJobsRequest, context: Context
    ) -> apb.DeleteJobsResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        seqs, state, job_filter = _selection(p, request, DELETABLE)
        p.done()
        jobs = self._jobs()
        if state is None:
            return apb.DeleteJobsResponse(deleted=await jobs.delete_ids(queue, seqs))
        return apb.DeleteJobsResponse(deleted=await jobs.delete_state(queue, state, job_filter))

    @unary
    async def PromoteJobs(
        self, request: apb.PromoteJobsRequest, context: Context
    ) -> apb.PromoteJobsResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        seqs = _job_ids(p, queue, request.job_ids)
        p.done()
        jobs = self._jobs()
        if seqs:
            return apb.PromoteJobsResponse(promoted=await jobs.promote_ids(queue, seqs))
        return apb.PromoteJobsResponse(promoted=await jobs.promote_all(queue))

    @unary
    async def ListDeadLetterGroups(
        self, request: apb.ListDeadLetterGroupsRequest, context: Context
    ) -> apb.ListDeadLetterGroupsResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        page_size = _page_size(p, "page_size", request.page_size, GROUP_PAGE_SIZE)
        after = _token(p, "page_token", request.page_token, queue, "groups", True)
        p.done()
        page = await self._jobs().dead_groups(queue, page_size, after, out.SCRIPT_REPLY_BYTES)
        return out.group_page(queue, page)

    @streaming
    async def RedriveDeadLetters(
        self, request: apb.RedriveDeadLettersRequest, context: Context
    ) -> AsyncIterator[apb.RedriveDeadLettersResponse]:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        fingerprint = _fingerprint(p, "fingerprint", request.fingerprint)
        job_filter = _filter(p, "filter", request.filter)
        p.in_range("rate", request.rate, 0, MAX_RATE)
        p.in_range("limit", request.limit, 0, MAX_LIMIT)
        p.done()
        progress = self._jobs().redrive(
            queue, fingerprint, job_filter, request.rate, request.dry_run, request.limit
        )
        async for step in progress:
            yield out.redrive(step)

    @unary
    async def PurgeDeadLetters(
        self, request: apb.PurgeDeadLettersRequest, context: Context
    ) -> apb.PurgeDeadLettersResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        fingerprint = _fingerprint(p, "fingerprint", request.fingerprint)
        older_than = p.option_ms("older_than", request.older_than, 1, MAX_OLDER_THAN_MS, 0)
        aged = request.older_than.seconds != 0 or request.older_than.nanos != 0
        if request.all and (fingerprint or aged):
            p.bad("all", "must not be set with fingerprint or older_than")
        elif not (request.all or fingerprint or aged):
            p.bad("all", "is required when neither fingerprint nor older_than is given")
        p.done()
        purged = await self._jobs().purge(queue, fingerprint, older_than, request.dry_run)
        return apb.PurgeDeadLettersResponse(purged=purged)
