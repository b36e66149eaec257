"""The job state machine against a reference model (issue 14, "Proof"): Hypothesis drives
random sequences of enqueue, lease, heartbeat, complete, fail, cancel, time passing,
lease expiry (reclaim) and redrive (RetryJobs) against the real scripts on a real
Valkey, with the scripts' clock simulated, and after every step compares each job's
state and attempts with a small model. Jobs may carry a concurrency key (limit 1), and
settlements are retried with old tokens, so fencing, per-key exclusion and the replay
of a settlement are checked too.

JOBWIRE_STATE_MACHINE_EXAMPLES sets how many sequences run (CI: the default below)."""

import asyncio
import os
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from jobwire_broker.domain.model import (
    Backoff,
    BackoffKind,
    CompleteItem,
    FailItem,
    HeartbeatItem,
    JobError,
    JobState,
    NewJob,
    Outcome,
)
from jobwire_broker.store import Store
from jobwire_broker.store.jobs_admin import JobsAdminStore
from redis.asyncio import Redis
from support import RedisServer, unique_prefix

Q = "q"
LEASE_MS = 1_000
REPLAY_MS = 600_000  # lib.lua REPLAY_MS
EXAMPLES = int(os.environ.get("JOBWIRE_STATE_MACHINE_EXAMPLES", "100"))
NO_BACKOFF = Backoff(BackoffKind.FIXED, 0, 0, 1.0, 0.0)  # a failed job is ready at once
T = TypeVar("T")


@dataclass
class Job:
    seq: int
    key: str | None
    max_attempts: int
    state: JobState = JobState.READY
    attempt: int = 0
    releases: int = 0  # attempt - releases counts against max_attempts
    token: str | None = None  # of the current lease
    deadline_ms: int = 0
    cancel_requested: bool = False
    tokens: list[str] = field(default_factory=list)  # every lease's token, in order
    # The last settlement: (token, operation, time, state after).
    settled: tuple[str, str, int, JobState] | None = None

    def live(self, token: str, now: int) -> bool:
        return self.state is JobState.ACTIVE and token == self.token and self.deadline_ms > now

    def replays(self, token: str, op: str, now: int) -> JobState | None:
        if self.settled is None:
            return None
        t, o, at, state = self.settled
        return state if (t, o) == (token, op) and now - at <= REPLAY_MS else None


class JobMachine(RuleBasedStateMachine):
    def __init__(self, loop: asyncio.AbstractEventLoop, redis: Redis) -> None:
        super().__init__()
        self.loop = loop
        self.now = 1_800_000_000_000
        self.store = Store(redis, unique_prefix(), clock=lambda: self.now)
        self.admin = JobsAdminStore(self.store)
        self.jobs: list[Job] = []

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(call)

    def pick(self, i: int) -> Job:
        return self.jobs[i % len(self.jobs)]

    def token(self, job: Job, i: int) -> str:
        """One of the job's lease tokens, or (one time in len + 1) a made-up one."""
        choices = [*job.tokens, "not-a-token"]
        return choices[i % len(choices)]

    # -- rules ----------------------------------------------------------------------------

    @rule(max_attempts=st.integers(1, 3), key=st.sampled_from([None, "a", "b"]))
    def enqueue(self, max_attempts: int, key: str | None) -> None:
        job = NewJob(
            b"x",
            max_attempts=max_attempts,
            lease_ms=LEASE_MS,
            backoff=NO_BACKOFF,
            concurrency_key=key or "",
            concurrency_limit=1 if key else None,
        )
        (done,) = self.run(self.store.enqueue(Q, [job]))
        assert done.state is JobState.READY
        self.jobs.append(Job(done.seq, key, max_attempts))

    @rule(n=st.integers(1, 4))
    def lease(self, n: int) -> None:
        ready = [j for j in self.jobs if j.state is JobState.READY]
        busy = {j.key for j in self.jobs if j.state is JobState.ACTIVE and j.key}
        keys = {j.key for j in ready if j.key and j.key not in busy}
        eligible = sum(1 for j in ready if j.key is None) + len(keys)
        leased = self.run(self.store.lease(Q, n)).jobs
        assert len(leased) == min(n, eligible), (n, eligible, [j.seq for j in leased])
        by_seq = {j.seq: j for j in self.jobs}
        for record in leased:
            job = by_seq[record.seq]
            assert job.state is JobState.READY, f"leased {job} that was not ready"
            assert not (job.key and job.key in busy), f"two active jobs of key {job.key}"
            if job.key:
                busy.add(job.key)
            job.state, job.attempt, job.token = JobState.ACTIVE, job.attempt + 1, record.token
            job.deadline_ms = self.now + LEASE_MS
            job.tokens.append(record.token)

    @precondition(lambda self: self.jobs)
    @rule(i=st.integers(0, 99), t=st.integers(0, 9))
    def heartbeat(self, i: int, t: int) -> None:
        job = self.pick(i)
        token = self.token(job, t)
        (r,) = self.run(self.store.heartbeat(Q, [HeartbeatItem(job.seq, token)]))
        if job.live(token, self.now):
            assert r.outcome is Outcome.OK and r.cancel_requested == job.cancel_requested
            job.deadline_ms = self.now + LEASE_MS
        else:
            assert r.outcome is Outcome.LEASE_LOST

    @precondition(lambda self: self.jobs)
    @rule(i=st.integers(0, 99), t=st.integers(0, 9))
    def complete(self, i: int, t: int) -> None:
        job = self.pick(i)
        token = self.token(job, t)
        (r,) = self.run(self.store.complete(Q, [CompleteItem(job.seq, token, b"r")]))
        if job.live(token, self.now):
            assert r.outcome is Outcome.OK
            job.state, job.token = JobState.COMPLETED, None
            job.settled = (token, "complete", self.now, JobState.COMPLETED)
        elif job.replays(token, "complete", self.now):
            assert r.outcome is Outcome.OK
        else:
            assert r.outcome is Outcome.LEASE_LOST, (job, token)

    def _failed(self, job: Job) -> JobState:
        """The state a failed attempt of `job` ends in (no backoff: ready at once)."""
        if job.cancel_requested:
            return JobState.CANCELLED
        counted = job.attempt - job.releases
        return JobState.DEAD if counted >= job.max_attempts else JobState.READY

    @precondition(lambda self: self.jobs)
    @rule(i=st.integers(0, 99), t=st.integers(0, 9))
    def fail(self, i: int, t: int) -> None:
        job = self.pick(i)
        token = self.token(job, t)
        (r,) = self.run(self.store.fail(Q, [FailItem(job.seq, token, JobError("E"))]))
        again = job.replays(token, "fail", self.now)
        if job.live(token, self.now):
            state = self._failed(job)
            assert (r.outcome, r.state) == (Outcome.OK, state)
            job.state, job.token = state, None
            job.settled = (token, "fail", self.now, state)
        elif again:
            assert (r.outcome, r.state) == (Outcome.OK, again)
        else:
            assert r.outcome is Outcome.LEASE_LOST, (job, token)

    @precondition(lambda self: self.jobs)
    @rule(i=st.integers(0, 99))
    def cancel(self, i: int) -> None:
        job = self.pick(i)
        r = self.run(self.store.cancel(Q, job.seq))
        if job.state in (JobState.COMPLETED, JobState.DEAD):
            assert r.outcome is Outcome.JOB_FINISHED
            return
        assert r.outcome is Outcome.OK
        if job.state is JobState.READY:
            job.state = JobState.CANCELLED
        elif job.state is JobState.ACTIVE:
            job.cancel_requested = True
        assert r.state is job.state

    @precondition(lambda self: self.jobs)
    @rule(i=st.integers(0, 99))
    def redrive(self, i: int) -> None:
        """RetryJobs by id: a dead or cancelled job is ready again, its attempts counted
        afresh; any other state is refused and nothing changes."""
        job = self.pick(i)
        change = self.run(self.admin.retry(Q, [job.seq]))
        if job.state in (JobState.DEAD, JobState.CANCELLED):
            assert change.done == 1
            job.state, job.releases, job.cancel_requested = JobState.READY, job.attempt, False
        else:
            assert (change.done, change.refused_state) == (0, job.state)

    @rule(ms=st.sampled_from([0, 1, 400, 999, 1_000, 1_500, REPLAY_MS]))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @rule()
    def reclaim(self) -> None:
        """The maintenance loop takes back leases that ran out: a failed attempt each."""
        taken = self.run(self.store.reclaim(Q))
        expired = [j for j in self.jobs if j.state is JobState.ACTIVE and j.deadline_ms <= self.now]
        assert sorted(r.seq for r in taken) == sorted(j.seq for j in expired)
        for job in expired:
            job.state, job.token = self._failed(job), None

    # -- after every step -----------------------------------------------------------------

    @invariant()
    def the_store_agrees(self) -> None:
        for job in self.jobs:
            record = self.run(self.store.get(Q, job.seq))
            assert record is not None
            assert (record.state, record.attempt) == (job.state, job.attempt), job
            assert record.releases == job.releases, job
            assert record.cancel_requested == job.cancel_requested or job.state in (
                JobState.CANCELLED,
                JobState.COMPLETED,
                JobState.DEAD,
            )

    @invariant()
    def one_active_job_per_key(self) -> None:
        active = [j.key for j in self.jobs if j.state is JobState.ACTIVE and j.key]
        assert len(active) == len(set(active))


@pytest.fixture
def loop_and_redis(redis_server: RedisServer) -> Iterator[tuple[asyncio.AbstractEventLoop, Redis]]:
    loop = asyncio.new_event_loop()
    redis = Redis.from_url(redis_server.url)
    try:
        yield loop, redis
    finally:
        loop.run_until_complete(redis.aclose())
        loop.close()


def test_the_state_machine_matches_its_model(
    loop_and_redis: tuple[asyncio.AbstractEventLoop, Redis],
) -> None:
    loop, redis = loop_and_redis
    run_state_machine_as_test(
        lambda: JobMachine(loop, redis),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
