"""Dependencies and flows (docs/flows.md): jobs that wait for other jobs, created alone
(JobSpec.depends_on) or as a flow of jobs that name each other by ref, all or none in one
script call. The store resolves dependants atomically with their dependency's end."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..store import DeadlineRefused, FlowEntry, Store, UnknownDependency
from . import deadlines
from .errors import FieldViolation, JobwireError, cross_slot, invalid, not_found
from .hooks import Hooks
from .ids import job_id
from .model import Enqueued, JobRecord, NewJob, TraceContext


@dataclass(frozen=True, slots=True)
class FlowJob:
    """One job of an EnqueueFlow: `refs` are the request indexes of the jobs of the flow
    it waits for; `field` is where it was in the request (`jobs[3]`)."""

    queue: str
    job: NewJob
    refs: tuple[int, ...]
    field: str


def cycle(refs: Sequence[Sequence[int]]) -> list[int] | None:
    """A cycle of the graph (job i waits for each of refs[i]) as the indexes along it,
    or None when there is none. Iterative, so 1000 jobs in a chain recurse nowhere."""
    state = [0] * len(refs)  # 0 unseen, 1 on the current path, 2 done
    for start in range(len(refs)):
        if state[start]:
            continue
        path, stack = [start], [iter(refs[start])]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return [*path[path.index(nxt) :], nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(refs[nxt]))
    return None


def order(refs: Sequence[Sequence[int]]) -> list[int]:
    """The indexes with every job after the jobs it waits for (the graph has no cycle),
    otherwise in request order."""
    done: set[int] = set()
    out: list[int] = []
    for start in range(len(refs)):
        stack = [(start, iter(refs[start]))]
        while stack:
            node, it = stack[-1]
            if node in done:
                stack.pop()
                continue
            nxt = next(it, None)
            if nxt is None:
                done.add(node)
                out.append(node)
                stack.pop()
            elif nxt not in done:
                stack.append((nxt, iter(refs[nxt])))
    return out


async def check_slots(store: Store, queues: set[str]) -> None:
    """On Redis Cluster every queue is its own slot, and a script touches one slot."""
    if len(queues) > 1 and await store.is_cluster():
        raise cross_slot(
            "jobs and dependencies span queues "
            + ", ".join(sorted(queues))
            + ": on Redis Cluster they must all be in one queue"
        )


def unknown_dependency(field: str) -> JobwireError:
    return invalid([FieldViolation(field, "names no existing job")])


async def enqueue(store: Store, queue: str, jobs: Sequence[NewJob], field: str) -> list[Enqueued]:
    """Broker.enqueue's store call when jobs have dependencies."""
    queues = {queue} | {d.rpartition(":")[0] for j in jobs for d in j.depends_on}
    await check_slots(store, queues)
    try:
        return await store.enqueue(queue, jobs, field)
    except UnknownDependency as exc:
        raise unknown_dependency(str(exc)) from exc


async def enqueue_flow(
    store: Store, hooks: Hooks, jobs: Sequence[FlowJob], caller: TraceContext | None
) -> list[Enqueued]:
    """Creates the flow (a graph without cycles, checked by the caller): one script
    call, all or none. Results in request order."""
    queues = {j.queue for j in jobs} | {
        d.rpartition(":")[0] for j in jobs for d in j.job.depends_on
    }
    await check_slots(store, queues)
    # The producer hooks (trace context, metrics) see each queue's jobs as one enqueue.
    by_queue: dict[str, list[int]] = defaultdict(list)
    for i, j in enumerate(jobs):
        by_queue[j.queue].append(i)
    specs: list[NewJob] = [j.job for j in jobs]
    tokens: dict[str, Any] = {}
    for queue, idx in by_queue.items():
        hooked, tokens[queue] = hooks.enqueuing(queue, [specs[i] for i in idx], caller)
        for i, spec in zip(idx, hooked, strict=True):
            specs[i] = spec
    sequence = order([j.refs for j in jobs])
    position = {index: at for at, index in enumerate(sequence)}
    entries = [
        FlowEntry(
            jobs[i].queue,
            specs[i],
            tuple(position[r] for r in jobs[i].refs),
            f"{jobs[i].field}.job",
        )
        for i in sequence
    ]
    try:
        results = await store.enqueue_flow(entries)
    except Exception as exc:
        for token in tokens.values():
            hooks.enqueue_failed(token, exc)
        if isinstance(exc, UnknownDependency):
            raise unknown_dependency(str(exc)) from exc
        if isinstance(exc, DeadlineRefused):
            raise deadlines.refused(exc, [e.field for e in entries]) from None
        raise
    ordered: list[Enqueued] = [results[position[i]] for i in range(len(jobs))]
    for queue, idx in by_queue.items():
        hooks.enqueued(queue, tokens[queue], [ordered[i] for i in idx])
    return ordered


async def dependencies(store: Store, queue: str, seq: int) -> tuple[list[JobRecord], list[str]]:
    """The jobs `queue:seq` depends on, in depends_on order, and the ids no longer stored."""
    job = await store.get(queue, seq)
    if job is None:
        raise not_found(job_id(queue, seq))
    ids = [(d.rpartition(":")[0], int(d.rpartition(":")[2])) for d in job.depends_on]
    found = await store.get_many(ids)
    jobs = [j for j in found if j is not None]
    missing = [job_id(q, s) for (q, s), j in zip(ids, found, strict=True) if j is None]
    return jobs, missing
