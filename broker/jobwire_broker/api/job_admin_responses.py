"""Maps the job part of the admin service's answers to protobuf: pages of jobs and of
dead-letter groups (each with its next page token), and redrive progress."""

from jobwire.v1 import admin_service_pb2 as apb

from ..domain.ids import job_id
from ..domain.jobs_admin import (
    DeadGroup,
    GroupPage,
    JobPage,
    Position,
    RedriveProgress,
    page_token,
)
from ..domain.limits import DEFAULT_REPLY_BYTES
from . import responses as out

# A page is cut before its reply passes what every gRPC client reads by default (4 MiB),
# less room for the reply's framing.
REPLY_BYTES = DEFAULT_REPLY_BYTES - 1024
# The scripts' size estimate ends a page a little before that, so the cut here (exact,
# on the encoded reply) is rare.
SCRIPT_REPLY_BYTES = REPLY_BYTES - (64 << 10)


def _cut(message: apb.ListJobsResponse | apb.ListDeadLetterGroupsResponse, items: str) -> int:
    """Drops last items while the reply is over REPLY_BYTES (one stays). Returns how
    many were dropped."""
    repeated = getattr(message, items)
    dropped = 0
    while len(repeated) > 1 and message.ByteSize() > REPLY_BYTES:
        repeated.pop()
        dropped += 1
    return dropped


def _next_token(
    queue: str,
    scope: str,
    reverse: bool,
    kept: list[Position],
    dropped: int,
    after: Position | None,
) -> str:
    if dropped:  # cut here: go on after the last item kept
        return page_token(queue, scope, reverse, kept[len(kept) - dropped - 1])
    return page_token(queue, scope, reverse, after) if after else ""


def job_page(queue: str, scope: str, reverse: bool, page: JobPage) -> apb.ListJobsResponse:
    response = apb.ListJobsResponse(jobs=[out.job(job) for job, _ in page.jobs])
    dropped = _cut(response, "jobs")
    positions = [at for _, at in page.jobs]
    response.next_page_token = _next_token(queue, scope, reverse, positions, dropped, page.next)
    return response


def group(queue: str, g: DeadGroup) -> apb.DeadLetterGroup:
    return apb.DeadLetterGroup(
        fingerprint=g.fingerprint,
        error_type=g.error_type,
        message_template=g.template,
        count=g.count,
        first_seen_time=out.timestamp(g.first_ms),
        last_seen_time=out.timestamp(g.last_ms),
        sample_job_id=job_id(queue, g.sample_seq),
        sample_message=g.sample_message,
    )


def group_page(queue: str, page: GroupPage) -> apb.ListDeadLetterGroupsResponse:
    response = apb.ListDeadLetterGroupsResponse(groups=[group(queue, g) for g, _ in page.groups])
    dropped = _cut(response, "groups")
    positions = [at for _, at in page.groups]
    response.next_page_token = _next_token(queue, "groups", True, positions, dropped, page.next)
    return response


def redrive(progress: RedriveProgress) -> apb.RedriveDeadLettersResponse:
    return apb.RedriveDeadLettersResponse(
        matched=progress.matched, redriven=progress.redriven, done=progress.done
    )
