"""Job dependencies and flows (docs/flows.md), over real gRPC against a real broker and
Valkey: a dependant waits until its dependencies complete, fails with them under FAIL
and not under IGNORE, reads their results, survives crashing workers, and bad input
writes nothing; on a (one-node) Redis Cluster a flow across queues is refused."""

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.embedded import free_port
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import (
    RedisServer,
    broker_settings,
    eventually,
    running_broker,
    stub_for,
    unique_prefix,
)
from test_bad_input import refused, rejected

FAIL = job_pb2.DEPENDENCY_FAILURE_POLICY_FAIL
IGNORE = job_pb2.DEPENDENCY_FAILURE_POLICY_IGNORE
WAITING = job_pb2.JOB_STATE_WAITING
READY = job_pb2.JOB_STATE_READY
DEAD = job_pb2.JOB_STATE_DEAD
COMPLETED = job_pb2.JOB_STATE_COMPLETED
CANCELLED = job_pb2.JOB_STATE_CANCELLED
TERMINAL = {COMPLETED, DEAD, CANCELLED}


def spec(payload: bytes = b"", **kwargs: Any) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(payload=payload, **kwargs)


def fj(ref: str, queue: str, refs: Sequence[str] = (), **kwargs: Any) -> pb.FlowJob:
    return pb.FlowJob(ref=ref, queue=queue, job=spec(ref.encode(), **kwargs), depends_on_refs=refs)


async def state(stub: rpc.BrokerServiceStub, job_id: str) -> int:
    return int((await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.state)


async def job(stub: rpc.BrokerServiceStub, job_id: str) -> job_pb2.Job:
    return (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job


async def run_one(stub: rpc.BrokerServiceStub, queue: str, result: bytes = b"") -> str:
    """Leases one job of `queue` and completes it with `result`; returns its id."""
    leased = (await stub.Lease(pb.LeaseRequest(queue=queue))).jobs
    assert len(leased) == 1, leased
    held = leased[0]
    await stub.Complete(
        pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token, result=result)
    )
    return held.job.id


async def kill_one(stub: rpc.BrokerServiceStub, queue: str) -> str:
    """Leases one job of `queue` and fails it for good."""
    (held,) = (await stub.Lease(pb.LeaseRequest(queue=queue))).jobs
    error = job_pb2.JobError(type="Boom", message="no", non_retryable=True)
    await stub.Fail(pb.FailRequest(job_id=held.job.id, lease_token=held.lease_token, error=error))
    return held.job.id


async def nothing_ready(stub: rpc.BrokerServiceStub, queue: str) -> None:
    assert not (await stub.Lease(pb.LeaseRequest(queue=queue))).jobs


# -- the parent of three children across two queues -----------------------------------


async def test_parent_runs_after_its_children_across_queues_and_reads_them(
    stub: rpc.BrokerServiceStub,
) -> None:
    flow = await stub.EnqueueFlow(
        pb.EnqueueFlowRequest(
            jobs=[
                fj("parent", "pa", ["c1", "c2", "c3"]),
                fj("c1", "kids"),
                fj("c2", "kids"),
                fj("c3", "pa.kids"),
            ]
        )
    )
    parent, c1, c2, c3 = (r.job_id for r in flow.results)
    assert parent.startswith("pa:") and c3.startswith("pa.kids:")
    assert [r.state for r in flow.results] == [WAITING, READY, READY, READY]
    got = await job(stub, parent)
    assert got.pending_dependencies == 3 and list(got.spec.depends_on) == [c1, c2, c3]
    await nothing_ready(stub, "pa")

    done = {await run_one(stub, "kids", b"r-kids-1"), await run_one(stub, "kids", b"r-kids-2")}
    assert done == {c1, c2}
    got = await job(stub, parent)
    assert (got.state, got.pending_dependencies) == (WAITING, 1)
    await nothing_ready(stub, "pa")
    # The last child is in a third queue: its Complete releases the parent atomically.
    await run_one(stub, "pa.kids", b"r-pa-kids")
    assert await state(stub, parent) == READY
    (held,) = (await stub.Lease(pb.LeaseRequest(queue="pa"))).jobs
    assert held.job.id == parent

    deps = await stub.GetDependencies(pb.GetDependenciesRequest(job_id=parent))
    assert [j.id for j in deps.jobs] == [c1, c2, c3]
    assert [j.state for j in deps.jobs] == [COMPLETED] * 3
    assert sorted(j.result for j in deps.jobs) == [b"r-kids-1", b"r-kids-2", b"r-pa-kids"]
    assert list(deps.missing_job_ids) == []


async def test_enqueue_with_depends_on_waits_for_existing_jobs(
    stub: rpc.BrokerServiceStub,
) -> None:
    first = (await stub.Enqueue(pb.EnqueueRequest(queue="a", job=spec(b"1")))).job_id
    later = spec(b"2", depends_on=[first], delay=Duration(seconds=3600))
    second = await stub.Enqueue(pb.EnqueueRequest(queue="b", job=later))
    assert second.state == WAITING
    await run_one(stub, "a")
    # Its run time is an hour ahead: scheduled, not ready.
    assert await state(stub, second.job_id) == job_pb2.JOB_STATE_SCHEDULED
    # A dependency already completed counts as done at once.
    third = await stub.Enqueue(pb.EnqueueRequest(queue="a", job=spec(depends_on=[first])))
    assert third.state == READY


@pytest.mark.parametrize("policy", [FAIL, IGNORE])
async def test_a_dead_child_fails_the_parent_only_under_fail(
    stub: rpc.BrokerServiceStub, policy: int
) -> None:
    flow = await stub.EnqueueFlow(
        pb.EnqueueFlowRequest(
            jobs=[
                fj("top", "top", ["parent"]),
                fj("parent", "top", ["a", "b"], on_dependency_failure=policy),
                fj("a", "leaf"),
                fj("b", "leaf2"),
            ]
        )
    )
    top, parent, a, _ = (r.job_id for r in flow.results)
    assert await kill_one(stub, "leaf") == a
    if policy == FAIL:
        got = await job(stub, parent)
        assert got.state == DEAD
        assert got.last_error.type == "DEPENDENCY_FAILED" and got.last_error.non_retryable
        assert a in got.last_error.message
        # The failure cascades to the job waiting on the parent (FAIL by default).
        top_job = await job(stub, top)
        assert top_job.state == DEAD and parent in top_job.last_error.message
        await run_one(stub, "leaf2")
        assert await state(stub, parent) == DEAD
    else:
        assert (await job(stub, parent)).pending_dependencies == 1
        await run_one(stub, "leaf2")
        assert await run_one(stub, "top") == parent
        assert await run_one(stub, "top") == top


async def test_cancel_and_delete_resolve_dependants(
    stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    dep = (await stub.Enqueue(pb.EnqueueRequest(queue="c", job=spec()))).job_id
    ignoring = spec(depends_on=[dep], on_dependency_failure=IGNORE)
    failing = spec(depends_on=[dep])
    r = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="d", jobs=[ignoring, failing]))
    ign, fail = (x.job_id for x in r.results)
    # A waiting job is cancellable.
    waiting = (await stub.Enqueue(pb.EnqueueRequest(queue="d", job=failing))).job_id
    assert (await stub.CancelJob(pb.CancelJobRequest(job_id=waiting))).state == CANCELLED
    await stub.CancelJob(pb.CancelJobRequest(job_id=dep))
    assert await state(stub, ign) == READY
    got = await job(stub, fail)
    assert got.state == DEAD and "cancelled" in got.last_error.message

    # Deleting a dependency fails its dependants too.
    dep2 = (await stub.Enqueue(pb.EnqueueRequest(queue="c", job=spec()))).job_id
    child = (await stub.Enqueue(pb.EnqueueRequest(queue="c", job=spec(depends_on=[dep2])))).job_id
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        admin = arpc.AdminServiceStub(channel)
        counts = (await admin.GetQueue(apb.GetQueueRequest(queue="c"))).queue.counts
        assert (counts.waiting, counts.ready) == (1, 1)
        listed = await admin.ListJobs(apb.ListJobsRequest(queue="c", state=WAITING))
        assert [j.id for j in listed.jobs] == [child]
        await admin.DeleteJobs(apb.DeleteJobsRequest(queue="c", job_ids=[dep2]))
    got = await job(stub, child)
    assert got.state == DEAD and "deleted" in got.last_error.message
    deps = await stub.GetDependencies(pb.GetDependenciesRequest(job_id=child))
    assert (list(deps.jobs), list(deps.missing_job_ids)) == ([], [dep2])


async def test_many_dependants_are_resolved_in_bounded_steps(
    stub: rpc.BrokerServiceStub, redis: Redis, broker: BrokerApp
) -> None:
    """A job with 120 dependants: its Complete resolves 50, maintenance the rest."""
    dep = (await stub.Enqueue(pb.EnqueueRequest(queue="m", job=spec()))).job_id
    jobs = [spec(depends_on=[dep]) for _ in range(120)]
    r = await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue="m", jobs=jobs))
    ids = [x.job_id for x in r.results]
    await run_one(stub, "m")
    states = [await state(stub, i) for i in ids]
    assert 50 <= states.count(READY) < 120  # maintenance may already have run once

    async def all_ready() -> bool:
        return all([await state(stub, i) == READY for i in ids])

    await eventually(all_ready, timeout_s=20)
    prefix = broker.settings.key_prefix
    assert await redis.zcard(f"{prefix}:{{m}}:resolve") == 0
    assert await redis.exists(f"{prefix}:{{m}}:dependants:1") == 0


async def test_expired_leases_resolve_dependants_in_other_queues(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    """A dependency that goes dead by lease expiry (reclaim.lua has no other queue's
    keys) leaves its dependants in another queue to the maintenance loop."""
    once = spec(lease_duration=Duration(seconds=1), max_attempts=1)
    dep = (await stub.Enqueue(pb.EnqueueRequest(queue="e1", job=once))).job_id
    kid = (await stub.Enqueue(pb.EnqueueRequest(queue="e2", job=spec(depends_on=[dep])))).job_id
    same = (await stub.Enqueue(pb.EnqueueRequest(queue="e1", job=spec(depends_on=[dep])))).job_id
    (held,) = (await stub.Lease(pb.LeaseRequest(queue="e1"))).jobs
    assert held.job.id == dep

    async def both_dead() -> bool:
        return [await state(stub, kid), await state(stub, same)] == [DEAD, DEAD]

    await eventually(both_dead, timeout_s=15)
    assert (await job(stub, dep)).last_error.type == "LEASE_EXPIRED"
    assert await redis.zcard(f"{prefix}:{{e1}}:resolve") == 0


async def test_a_long_failing_chain_fails_in_bounded_steps(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    """120 jobs each waiting for the one before: the root's death fails them all, 50
    per script call, the rest through the maintenance loop."""
    chain = [fj("j0", "chain")] + [fj(f"j{i}", "chain", [f"j{i - 1}"]) for i in range(1, 121)]
    ids = [r.job_id for r in (await stub.EnqueueFlow(pb.EnqueueFlowRequest(jobs=chain))).results]
    await kill_one(stub, "chain")
    assert await state(stub, ids[50]) == DEAD  # within the Fail's own call

    async def all_dead() -> bool:
        return all([await state(stub, i) == DEAD for i in ids])

    await eventually(all_dead, timeout_s=20)
    assert await redis.zcard(f"{prefix}:{{chain}}:resolve") == 0
    assert await redis.zcard(f"{prefix}:{{chain}}:blocked") == 0


# -- bad input writes nothing --------------------------------------------------------


@pytest.fixture
async def seeded(stub: rpc.BrokerServiceStub) -> str:
    """Jobs in two queues, one of them waiting; returns an existing job's id."""
    first = (await stub.Enqueue(pb.EnqueueRequest(queue="q", job=spec()))).job_id
    await stub.Enqueue(pb.EnqueueRequest(queue="r", job=spec(depends_on=[first])))
    return first


def many_ids(n: int) -> list[str]:
    return [f"q:{i}" for i in range(1, n + 1)]


BAD_ENQUEUES = {
    "unknown id": (lambda ok: [ok, "q:999"], ["job.depends_on[1]"]),
    "unknown queue": (lambda ok: ["nowhere:1"], ["job.depends_on[0]"]),
    "malformed id": (lambda ok: [ok, "no-seq"], ["job.depends_on[1]"]),
    "zero seq": (lambda ok: ["q:0"], ["job.depends_on[0]"]),
    "repeated id": (lambda ok: [ok, ok], ["job.depends_on[1]"]),
    "over 100": (lambda ok: many_ids(101), ["job.depends_on"]),
}


@pytest.mark.parametrize("case", sorted(BAD_ENQUEUES))
async def test_bad_depends_on_writes_nothing(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, seeded: str, case: str
) -> None:
    deps, fields = BAD_ENQUEUES[case]
    job_spec = spec(depends_on=deps(seeded))
    await refused(
        redis, prefix, lambda: stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_spec)), fields
    )


async def test_bad_depends_on_in_a_batch_names_the_job(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, seeded: str
) -> None:
    jobs = [spec(depends_on=[seeded]), spec(depends_on=[seeded, "r:77"])]
    batch = pb.EnqueueBatchRequest(queue="q", jobs=jobs)
    await refused(redis, prefix, lambda: stub.EnqueueBatch(batch), ["jobs[1].depends_on[1]"])


def bad_flows(ok: str) -> dict[str, tuple[list[pb.FlowJob], list[str]]]:
    return {
        "cycle": (
            [fj("a", "q", ["c"]), fj("b", "r", ["a"]), fj("c", "q", ["b"]), fj("d", "q")],
            ["jobs[0].depends_on_refs"],
        ),
        "self cycle": ([fj("a", "q", ["a"])], ["jobs[0].depends_on_refs"]),
        "repeated ref": ([fj("a", "q"), fj("a", "r")], ["jobs[1].ref"]),
        "missing ref": ([fj("", "q")], ["jobs[0].ref"]),
        "unknown ref": ([fj("a", "q", ["zz"]), fj("b", "q")], ["jobs[0].depends_on_refs[0]"]),
        "ref twice": ([fj("a", "q", ["b", "b"]), fj("b", "q")], ["jobs[0].depends_on_refs[1]"]),
        "unknown id": (
            [fj("a", "q", ["b"]), fj("b", "r", depends_on=[ok, "r:404"])],
            ["jobs[1].job.depends_on[1]"],
        ),
        "over 100": (
            [fj("a", "q", ["b"], depends_on=many_ids(100)), fj("b", "q")],
            ["jobs[0].depends_on_refs"],
        ),
        "no jobs": ([], ["jobs"]),
    }


@pytest.mark.parametrize(
    "case",
    [
        "cycle",
        "self cycle",
        "repeated ref",
        "missing ref",
        "unknown ref",
        "ref twice",
        "unknown id",
        "over 100",
        "no jobs",
    ],
)
async def test_bad_flow_writes_nothing(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, seeded: str, case: str
) -> None:
    jobs, fields = bad_flows(seeded)[case]
    await refused(redis, prefix, lambda: stub.EnqueueFlow(pb.EnqueueFlowRequest(jobs=jobs)), fields)


async def test_get_dependencies_of_an_unknown_job_is_not_found(
    stub: rpc.BrokerServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetDependencies(pb.GetDependenciesRequest(job_id="q:12345"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- Redis Cluster: one queue, one slot --------------------------------------------------


class ClusterNode(RedisServer):
    """A real one-node Valkey cluster that owns every slot: a plain client works against
    it (nothing is ever redirected) but scripts are held to one slot."""

    def start(self) -> "ClusterNode":
        from jobwire_broker.embedded import valkey_binary

        args = [
            valkey_binary(),
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir),
            *("--save", "", "--appendonly", "no", "--cluster-enabled", "yes"),
            *("--cluster-config-file", os.path.join(self.dir, "nodes.conf")),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        from support import wait_for_port

        wait_for_port(self.port)
        return self


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is a valid, free port too: a
    node given a port above 55535 cannot open its bus and exits."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with contextlib.suppress(OSError), socket.socket() as s:
            s.bind(("127.0.0.1", port + 10_000))
            return port


@pytest.fixture(scope="module")
def cluster_node() -> Any:
    node = ClusterNode(port=cluster_port()).start()
    yield node
    node.stop()


async def test_cross_queue_flows_are_refused_on_a_cluster(cluster_node: ClusterNode) -> None:
    redis = Redis.from_url(cluster_node.url)
    try:
        await redis.execute_command("CLUSTER", "ADDSLOTSRANGE", "0", "16383")

        async def ok() -> bool:
            return b"cluster_state:ok" in await redis.execute_command("CLUSTER", "INFO")

        await eventually(ok)
        prefix = unique_prefix()
        async with running_broker(broker_settings(cluster_node.url, prefix)) as app:
            assert app.store.cluster
            async with stub_for(app.port) as stub:
                existing = (await stub.Enqueue(pb.EnqueueRequest(queue="x", job=spec()))).job_id
                cross = [fj("p", "x", ["c"]), fj("c", "y")]
                err = await rejected(
                    redis,
                    prefix,
                    lambda: stub.EnqueueFlow(pb.EnqueueFlowRequest(jobs=cross)),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "CROSS_SLOT",
                )
                assert "x, y" in err.message
                other = spec(depends_on=[existing])
                await rejected(
                    redis,
                    prefix,
                    lambda: stub.Enqueue(pb.EnqueueRequest(queue="y", job=other)),
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "CROSS_SLOT",
                )
                # One queue works, depends_on of an existing job included.
                flow = await stub.EnqueueFlow(
                    pb.EnqueueFlowRequest(
                        jobs=[fj("p", "x", ["c"], depends_on=[existing]), fj("c", "x")]
                    )
                )
                parent = flow.results[0].job_id
                assert flow.results[0].state == WAITING
                await run_one(stub, "x")
                await run_one(stub, "x")
                assert await run_one(stub, "x") == parent
    finally:
        await redis.aclose()


# -- crashing workers ---------------------------------------------------------------------


async def test_flows_survive_killed_workers(
    stub: rpc.BrokerServiceStub, broker: BrokerApp, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    """Real worker processes, SIGKILLed mid-job, their leases (1 s) left to expire: every
    job still ends completed exactly once, and no parent runs before its children."""
    import random

    from test_crash import Records, WorkerProcess

    flows = 12
    options: dict[str, Any] = {"lease_duration": Duration(seconds=1), "max_attempts": 50}
    parents: dict[str, list[str]] = {}
    for n in range(flows):
        r = await stub.EnqueueFlow(
            pb.EnqueueFlowRequest(
                jobs=[
                    fj(f"p{n}", "fp", ["a", "b", "c"], **options),
                    fj("a", "fk1", **options),
                    fj("b", "fk1", **options),
                    fj("c", "fk2", **options),
                ]
            )
        )
        parent, *children = (x.job_id for x in r.results)
        parents[parent] = children
    everything = [j for p, kids in parents.items() for j in (p, *kids)]
    target = [f"127.0.0.1:{broker.port}"]
    workers: list[WorkerProcess] = []

    def spawn(queue: str) -> WorkerProcess:
        w = WorkerProcess(f"w{len(workers)}-{queue}", target, tmp_path, 2, (20, 60), queue)
        workers.append(w)
        return w

    try:
        victims = [spawn("fk1"), spawn("fp")]
        spawn("fk1")
        spawn("fk2")
        rng = random.Random(7)
        for victim in victims:
            # In a thread: the broker answers from this test's event loop.
            await asyncio.to_thread(victim.freeze_holding, rng, 30)
            victim.kill()  # mid-job: its leases expire and are taken back
            spawn(victim.name.split("-")[1])

        async def all_done() -> bool:
            return all([await state(stub, j) in TERMINAL for j in everything])

        await eventually(all_done, timeout_s=90, every_s=0.2)
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(w.wait)

    assert any(w.killed and w.records().holding() for w in workers)
    await account(stub, redis, prefix, parents, [Records.read(w.log) for w in workers])


async def account(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    parents: dict[str, list[str]],
    records: list[Any],
) -> None:
    """Every job completed by exactly one attempt, no parent before its children, each
    job in exactly one state set, nothing left to resolve."""
    everything = [j for p, kids in parents.items() for j in (p, *kids)]
    ok = [a for r in records for a in r.ok]
    leased = [a for r in records for a in r.leased]
    for job_id in everything:
        got = await job(stub, job_id)
        assert got.state == COMPLETED, got
        # Completed by exactly one attempt, the last one.
        assert [a for a in ok if a[0] == job_id] == [(job_id, got.attempt)]
    for parent, children in parents.items():
        started = (await job(stub, parent)).start_time.ToMilliseconds()
        finished = [(await job(stub, c)).finish_time.ToMilliseconds() for c in children]
        assert started >= max(finished), parent
        # Never leased while waiting: every lease of the parent is one of its attempts.
        attempts = sorted(a for j, a in leased if j == parent)
        assert attempts and attempts[0] == 1, (parent, attempts)
    # Every job in exactly one state set, and nothing left to resolve.
    for queue in ("fp", "fk1", "fk2"):
        sets = ["blocked", "ready", "scheduled", "active", "completed", "dead", "cancelled"]
        for job_id in (j for j in everything if j.startswith(queue + ":")):
            seq = job_id.rsplit(":", 1)[1]
            hits = [s for s in sets if await redis.zscore(f"{prefix}:{{{queue}}}:{s}", seq)]
            assert hits == ["completed"], (job_id, hits)
        assert await redis.zcard(f"{prefix}:{{{queue}}}:resolve") == 0


# -- the Python SDK --------------------------------------------------------------------


async def test_sdk_enqueues_flows_and_reads_dependencies(broker: BrokerApp) -> None:
    import jobwire

    target = f"127.0.0.1:{broker.port}"
    async with jobwire.Client(target) as client:
        first = await client.enqueue("sdk", {"n": 1})
        spec = jobwire.job_spec(
            "parent",
            depends_on=[first.job_id],
            on_dependency_failure=jobwire.DependencyFailure.IGNORE,
        )
        results = await client.enqueue_flow(
            [
                jobwire.FlowJob("parent", "sdk", spec, depends_on_refs=["kid"]),
                jobwire.FlowJob("kid", "sdk2", b"kid"),
            ]
        )
        assert [r.state for r in results] == [jobwire.JobState.WAITING, jobwire.JobState.READY]
        parent = await client.get(results[0].job_id)
        assert parent.depends_on == (first.job_id, results[1].job_id)
        assert parent.pending_dependencies == 2
        waiting = await client.enqueue("sdk", "x", depends_on=[first.job_id])
        assert waiting.state is jobwire.JobState.WAITING
        deps = await client.get_dependencies(parent.id)
        assert [j.id for j in deps.jobs] == list(parent.depends_on)
        assert deps.missing_job_ids == []

    def sync_calls() -> None:
        with jobwire.SyncClient(target) as sync:
            r = sync.enqueue_flow(
                [jobwire.FlowJob("a", "sdk", "a", ["b"]), jobwire.FlowJob("b", "sdk", "b")]
            )
            assert r[0].state is jobwire.JobState.WAITING
            assert [j.id for j in sync.get_dependencies(r[0].job_id).jobs] == [r[1].job_id]
            dep = sync.enqueue("sdk", "y", depends_on=[r[1].job_id])
            assert dep.state is jobwire.JobState.WAITING

    await asyncio.to_thread(sync_calls)
