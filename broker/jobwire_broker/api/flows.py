"""EnqueueFlow's request as domain values: every job parsed as Enqueue parses it, refs
unique and known, no cycle, at most MAX_DEPENDENCIES dependencies per job."""

from jobwire.v1 import broker_service_pb2 as pb

from ..domain.flows import FlowJob, cycle
from ..domain.ids import queue_problem
from ..domain.model import MAX_DEPENDENCIES
from .requests import Parser


def flow_jobs(p: Parser, request: pb.EnqueueFlowRequest) -> list[FlowJob]:
    """The flow's jobs, in request order; violations recorded in `p`."""
    p.batch("jobs", len(request.jobs))
    refs = _refs(p, request)
    jobs = [_job(p, f"jobs[{i}]", fj, refs) for i, fj in enumerate(request.jobs)]
    found = cycle([j.refs for j in jobs])
    if found:
        names = " -> ".join(request.jobs[i].ref for i in found)
        p.bad(f"jobs[{found[0]}].depends_on_refs", f"forms a cycle: {names}")
    return jobs


def _refs(p: Parser, request: pb.EnqueueFlowRequest) -> dict[str, int]:
    """Each ref's index; a ref must be well-formed and unique."""
    refs: dict[str, int] = {}
    for i, fj in enumerate(request.jobs):
        problem = queue_problem(fj.ref)  # refs follow the rule of queue names
        if problem:
            p.bad(f"jobs[{i}].ref", problem)
        elif fj.ref in refs:
            p.bad(f"jobs[{i}].ref", f"repeats the ref of jobs[{refs[fj.ref]}]")
        else:
            refs[fj.ref] = i
    return refs


def _job(p: Parser, field: str, fj: pb.FlowJob, refs: dict[str, int]) -> FlowJob:
    queue = p.queue(f"{field}.queue", fj.queue)
    if not fj.HasField("job"):
        p.bad(f"{field}.job", "is required")
    job = p.new_job(f"{field}.job", fj.job)
    waits: list[int] = []
    for j, ref in enumerate(fj.depends_on_refs):
        name = f"{field}.depends_on_refs[{j}]"
        if ref not in refs:
            p.bad(name, f"names no job of this flow: {ref[:128]!r}")
        elif refs[ref] in waits:
            p.bad(name, "repeats an earlier ref of this job")
        else:
            waits.append(refs[ref])
    total = len(fj.job.depends_on) + len(fj.depends_on_refs)
    if total > MAX_DEPENDENCIES:
        p.bad(
            f"{field}.depends_on_refs",
            f"with depends_on has {total} dependencies, limit {MAX_DEPENDENCIES}",
        )
    return FlowJob(queue, job, tuple(waits), field)
