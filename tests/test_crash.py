"""Crash accounting with real processes: two broker replicas on one Valkey, raw workers
(tests/workers/raw_worker.py) that get SIGKILLed or frozen mid-job, and one replica
SIGKILLed mid-run. Every job must end in exactly one terminal state, completed at most
once, and nothing may be lost."""

import contextlib
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.store.keys import set_key
from redis import Redis
from support import BrokerProcess, RedisServer

WORKER = Path(__file__).resolve().parent / "workers" / "raw_worker.py"
QUEUE = "crash"
LEASE_S = 2
RECORD = re.compile(r"(L|C|OK|R) (\S+) (\d+)")
FAILOVER = re.compile(r"F (\S+)")

Attempt = tuple[str, int]  # (job id, attempt number)


# -- worker processes ----------------------------------------------------------------


@dataclass
class Records:
    """One worker's log, parsed. Only whole lines count: a SIGKILL may cut the last."""

    leased: list[Attempt] = field(default_factory=list)
    tried: list[Attempt] = field(default_factory=list)
    ok: list[Attempt] = field(default_factory=list)
    refused: list[Attempt] = field(default_factory=list)
    # ("F", target) and ("OK", job id) in log order, to see work done after a failover.
    timeline: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> "Records":
        records = cls()
        if not path.exists():
            return records
        lists = {"L": records.leased, "C": records.tried, "OK": records.ok, "R": records.refused}
        for line in path.read_text().splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            if found := RECORD.fullmatch(line.strip()):
                kind, job, attempt = found.groups()
                lists[kind].append((job, int(attempt)))
                if kind == "OK":
                    records.timeline.append(("OK", job))
            elif found := FAILOVER.fullmatch(line.strip()):
                records.timeline.append(("F", found.group(1)))
        return records

    def holding(self) -> set[Attempt]:
        """Leased jobs whose Complete was not even tried yet."""
        return set(self.leased) - set(self.tried)


class WorkerProcess:
    def __init__(
        self,
        name: str,
        targets: list[str],
        log_dir: Path,
        batch: int,
        work_ms: tuple[int, int],
        queue: str,
    ) -> None:
        self.name = name
        self.targets = targets
        self.log = log_dir / f"{name}.log"
        self.stderr = log_dir / f"{name}.stderr"
        self.killed = False
        args = [
            sys.executable, str(WORKER), "--targets", ",".join(targets), "--queue", queue,
            "--log", str(self.log), "--batch", str(batch), "--idle-exit", "60",
            "--work-min-ms", str(work_ms[0]), "--work-max-ms", str(work_ms[1]),
        ]  # fmt: skip
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)

    def records(self) -> Records:
        return Records.read(self.log)

    def pause(self) -> None:
        """SIGSTOP, and wait until the kernel has really stopped it, so its log is final."""
        self.process.send_signal(signal.SIGSTOP)
        proc = psutil.Process(self.process.pid)
        end = time.monotonic() + 5
        while proc.status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < end, f"{self.name} did not stop"
            time.sleep(0.001)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        self.killed = True
        self.process.kill()
        self.process.wait()

    def terminate(self) -> None:
        """SIGTERM: the worker finishes the jobs in hand and exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()

    def wait(self, timeout_s: float = 15) -> int:
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def freeze_holding(self, rng: random.Random, timeout_s: float = 15) -> set[Attempt]:
        """Stops the worker at a moment it holds leased jobs it has not tried to complete,
        i.e. mid-job; returns those (job, attempt) pairs. The worker stays stopped."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            self.pause()
            held = self.records().holding()
            if held:
                return held
            self.resume()
            time.sleep(rng.uniform(0.002, 0.02))
        raise AssertionError(f"{self.name} never held a job")

    def stderr_tail(self) -> str:
        return self.stderr.read_text()[-2000:] if self.stderr.exists() else ""


class WorkerPool:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []

    def start(
        self,
        targets: list[str],
        batch: int = 4,
        work_ms: tuple[int, int] = (20, 40),
        queue: str = QUEUE,
    ) -> WorkerProcess:
        name = f"w{len(self.workers)}"
        worker = WorkerProcess(name, targets, self.log_dir, batch, work_ms, queue)
        self.workers.append(worker)
        return worker

    def live(self) -> list[WorkerProcess]:
        return [w for w in self.workers if not w.killed]

    def killed(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.killed]

    def stop_live(self) -> dict[str, int]:
        """SIGTERM to every live worker; their exit codes (0 unless a worker crashed)."""
        for worker in self.live():
            worker.terminate()
        return {w.name: w.wait() for w in self.live()}

    def cleanup(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()

    def report(self) -> str:
        return "\n".join(f"--- {w.name} stderr:\n{w.stderr_tail()}" for w in self.workers)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def replicas(redis_server: RedisServer, prefix: str) -> Iterator[list[BrokerProcess]]:
    """Two broker replicas on the same Valkey and key prefix."""
    args = ("--redis-url", redis_server.url, "--key-prefix", prefix, "--grace", "0.5")
    started: list[BrokerProcess] = []
    try:
        for _ in range(2):
            started.append(BrokerProcess(*args))
        yield started
    finally:
        for i, broker in enumerate(started):
            with contextlib.suppress(subprocess.TimeoutExpired):
                broker.terminate(timeout_s=10)
            broker.kill()
            print(f"--- replica {i} output:\n{''.join(broker.output[-40:])}")  # shown on failure


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[WorkerPool]:
    workers = WorkerPool(tmp_path)
    try:
        yield workers
    finally:
        workers.cleanup()


@pytest.fixture
def valkey(redis_server: RedisServer) -> Iterator[Redis]:
    client: Redis = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def rng() -> random.Random:
    seed = random.randrange(2**32)
    print(f"random seed {seed}")  # shown when a test fails, to replay its schedule
    return random.Random(seed)


@contextlib.contextmanager
def stub_to(broker: BrokerProcess) -> Iterator[rpc.BrokerServiceStub]:
    with grpc.insecure_channel(broker.target) as channel:
        yield rpc.BrokerServiceStub(channel)


# -- helpers -------------------------------------------------------------------------


def enqueue(
    stub: rpc.BrokerServiceStub, n: int, max_attempts: int, queue: str = QUEUE
) -> list[str]:
    specs = [
        job_pb2.JobSpec(
            payload=str(i).encode(),
            max_attempts=max_attempts,
            lease_duration=Duration(seconds=LEASE_S),
            # Retries of taken-back leases come back quickly.
            backoff=job_pb2.BackoffPolicy(
                kind=job_pb2.BACKOFF_KIND_FIXED, initial_delay=Duration(nanos=100_000_000)
            ),
        )
        for i in range(n)
    ]
    response = stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=specs), timeout=30)
    ids = [r.job_id for r in response.results]
    assert len(set(ids)) == n
    return ids


def counts(valkey: Redis, prefix: str) -> dict[str, int]:
    names = ("ready", "scheduled", "active", "completed", "dead", "cancelled")
    return {name: int(valkey.zcard(set_key(prefix, QUEUE, name))) for name in names}


def members(valkey: Redis, prefix: str, name: str) -> set[str]:
    return {f"{QUEUE}:{m.decode()}" for m in valkey.zrange(set_key(prefix, QUEUE, name), 0, -1)}


def get_jobs(stub: rpc.BrokerServiceStub, ids: list[str]) -> dict[str, job_pb2.Job]:
    futures = {i: stub.GetJob.future(pb.GetJobRequest(job_id=i), timeout=30) for i in ids}
    return {i: f.result().job for i, f in futures.items()}


def run_until(
    done: Callable[[], bool],
    events: list[tuple[Callable[[], bool], Callable[[], None]]],
    timeout_s: float,
    report: Callable[[], str],
) -> None:
    """Fires each event, in order, once its trigger holds; returns when `done` holds and
    every event has fired."""
    start = time.monotonic()
    end = start + timeout_s
    pending = list(events)
    while pending or not done():
        if pending and pending[0][0]():
            action = pending.pop(0)[1]
            action()
            print(f"{time.monotonic() - start:6.2f}s {action.__name__}")  # shown on failure
            continue
        assert time.monotonic() < end, f"not done within {timeout_s}s\n{report()}"
        time.sleep(0.01)
    print(f"{time.monotonic() - start:6.2f}s done")


# -- tests ---------------------------------------------------------------------------


@dataclass
class Chaos:
    """The faults of the main test, and what each one left behind for the checks."""

    pool: WorkerPool
    rng: random.Random
    killed_held: dict[str, set[Attempt]] = field(default_factory=dict)
    frozen: WorkerProcess | None = None
    frozen_held: set[Attempt] = field(default_factory=set)
    thaw_at: float = float("inf")
    on_killed_replica: set[str] = field(default_factory=set)

    def kill_worker(self) -> None:
        """SIGKILLs a random worker mid-job and starts a replacement."""
        victim = self.rng.choice([w for w in self.pool.live() if w is not self.frozen])
        self.killed_held[victim.name] = victim.freeze_holding(self.rng)
        victim.kill()
        self.pool.start(victim.targets)

    def freeze_worker(self) -> None:
        """SIGSTOPs a worker mid-job until its leases have expired."""
        self.frozen = self.rng.choice(self.pool.live())
        self.frozen_held = self.frozen.freeze_holding(self.rng)
        self.thaw_at = time.monotonic() + LEASE_S + 1.5

    def thaw_due(self) -> bool:
        return time.monotonic() >= self.thaw_at

    def thaw_worker(self) -> None:
        assert self.frozen is not None
        self.frozen.resume()

    def kill_replica(self, broker: BrokerProcess) -> Callable[[], None]:
        def kill_replica() -> None:
            broker.kill()
            self.on_killed_replica = {
                w.name for w in self.pool.live() if w.targets[0] == broker.target
            }

        return kill_replica


def test_crash_accounting(
    replicas: list[BrokerProcess],
    pool: WorkerPool,
    valkey: Redis,
    prefix: str,
    rng: random.Random,
) -> None:
    """1,000 jobs, 8 workers; 3 workers SIGKILLed mid-job and replaced, one frozen past
    its leases, one replica SIGKILLed: every job completed exactly once."""
    n = 1000
    a, b = replicas
    chaos = Chaos(pool, rng)

    def reached(k: int) -> Callable[[], bool]:
        return lambda: counts(valkey, prefix)["completed"] >= k

    with stub_to(b) as stub:
        ids = enqueue(stub, n, max_attempts=20)
        for i in range(8):
            pool.start([a.target, b.target] if i % 2 == 0 else [b.target, a.target])
        run_until(
            done=reached(n),
            events=[
                (reached(80), chaos.kill_worker),
                (reached(160), chaos.freeze_worker),
                (reached(240), chaos.kill_replica(a)),
                (reached(320), chaos.kill_worker),
                (reached(400), chaos.kill_worker),
                (chaos.thaw_due, chaos.thaw_worker),
            ],
            timeout_s=90,
            report=lambda: f"{counts(valkey, prefix)}\n{pool.report()}",
        )

        # The frozen worker woke up with stale leases: its Completes must be refused.
        assert chaos.frozen is not None
        deadline = time.monotonic() + 15
        while not chaos.frozen_held <= set(chaos.frozen.records().refused):
            assert time.monotonic() < deadline, f"not refused: {chaos.frozen_held}"
            time.sleep(0.05)

        exit_codes = pool.stop_live()
        assert set(exit_codes.values()) == {0}, f"{exit_codes}\n{pool.report()}"
        jobs = get_jobs(stub, ids)

    assert counts(valkey, prefix) == {
        "ready": 0, "scheduled": 0, "active": 0, "completed": n, "dead": 0, "cancelled": 0,
    }  # fmt: skip
    assert members(valkey, prefix, "completed") == set(ids)
    assert {i for i, job in jobs.items() if job.state != job_pb2.JOB_STATE_COMPLETED} == set()
    check_logs(pool, jobs, chaos, survivor=b.target)


def check_logs(pool: WorkerPool, jobs: dict[str, job_pb2.Job], chaos: Chaos, survivor: str) -> None:
    logs = {w.name: w.records() for w in pool.workers}
    killed = {w.name for w in pool.killed()}
    assert set(chaos.killed_held) == killed and len(killed) == 3

    # No attempt number was ever handed out twice.
    leased = Counter(p for r in logs.values() for p in r.leased)
    assert [p for p, k in leased.items() if k > 1] == []

    # Each job completed at most once by a worker that saw OK; the final attempt did it.
    ok: dict[str, list[int]] = defaultdict(list)
    for r in logs.values():
        for job, attempt in r.ok:
            ok[job].append(attempt)
    assert {j: a for j, a in ok.items() if len(a) > 1} == {}
    assert {j: a for j, a in ok.items() if a != [jobs[j].attempt]} == {}

    # A job without an OK line was completed by a worker killed between its Complete
    # and writing the line: that worker tried exactly the job's final attempt.
    tried_by_killed = {p for name in killed for p in logs[name].tried}
    unlogged = {j for j in jobs if j not in ok}
    assert {j for j in unlogged if (j, jobs[j].attempt) not in tried_by_killed} == set()

    # Jobs held by a killed or frozen worker were finished by a later attempt.
    for held in [*chaos.killed_held.values(), chaos.frozen_held]:
        assert {(j, a) for j, a in held if jobs[j].attempt <= a} == set()

    # Every refused Complete was stale: a later attempt finished the job.
    refused = [p for r in logs.values() for p in r.refused]
    assert [(j, a) for j, a in refused if a >= jobs[j].attempt] == []

    # Workers of the killed replica moved to the survivor and kept completing jobs.
    assert chaos.on_killed_replica
    for name in chaos.on_killed_replica - killed:
        timeline = logs[name].timeline
        assert ("F", survivor) in timeline, f"{name} never failed over to {survivor}"
        after = timeline[timeline.index(("F", survivor)) :]
        assert any(kind == "OK" for kind, _ in after), f"{name} idle after failover"


def test_single_attempt_jobs_killed_mid_job_go_dead(
    replicas: list[BrokerProcess],
    pool: WorkerPool,
    valkey: Redis,
    prefix: str,
    rng: random.Random,
) -> None:
    """max_attempts=1: a job whose only attempt died with its worker ends DEAD with
    LEASE_EXPIRED; every other job COMPLETED; each in exactly one terminal set."""
    n = 100
    a, b = replicas
    with stub_to(a) as stub:
        ids = enqueue(stub, n, max_attempts=1)
        for i in range(4):
            pool.start([a.target, b.target] if i % 2 == 0 else [b.target, a.target], batch=2)

        killed_held: set[Attempt] = set()

        def finished() -> int:
            c = counts(valkey, prefix)
            return c["completed"] + c["dead"]

        def reached(k: int) -> Callable[[], bool]:
            return lambda: finished() >= k

        def kill_worker() -> None:
            victim = rng.choice(pool.live())
            killed_held.update(victim.freeze_holding(rng))
            victim.kill()

        run_until(
            done=reached(n),
            events=[(reached(15), kill_worker), (reached(40), kill_worker)],
            timeout_s=60,
            report=lambda: f"{counts(valkey, prefix)}\n{pool.report()}",
        )
        exit_codes = pool.stop_live()
        assert set(exit_codes.values()) == {0}, f"{exit_codes}\n{pool.report()}"
        jobs = get_jobs(stub, ids)

    c = counts(valkey, prefix)
    assert (c["ready"], c["scheduled"], c["active"], c["cancelled"]) == (0, 0, 0, 0)
    completed, dead = members(valkey, prefix, "completed"), members(valkey, prefix, "dead")
    assert completed.isdisjoint(dead) and completed | dead == set(ids)

    by_state = {
        state: {i for i, job in jobs.items() if job.state == state}
        for state in (job_pb2.JOB_STATE_COMPLETED, job_pb2.JOB_STATE_DEAD)
    }
    assert by_state[job_pb2.JOB_STATE_COMPLETED] == completed
    assert by_state[job_pb2.JOB_STATE_DEAD] == dead
    assert {i for i, job in jobs.items() if job.attempt != 1} == set()
    assert {i for i in dead if jobs[i].last_error.type != "LEASE_EXPIRED"} == set()

    logs = {w.name: w.records() for w in pool.workers}
    killed = {w.name for w in pool.killed()}
    leased = Counter(job for r in logs.values() for job, _ in r.leased)
    assert [j for j, k in leased.items() if k > 1] == []
    ok = {job for r in logs.values() for job, _ in r.ok}
    leased_by_killed = {job for name in killed for job, _ in logs[name].leased}
    tried_by_killed = {job for name in killed for job, _ in logs[name].tried}

    # Jobs killed mid-job are dead; dead jobs were never completed and, when their
    # lease reached a worker's log at all, it was a killed worker's.
    assert killed_held and {job for job, _ in killed_held} <= dead
    assert ok.isdisjoint(dead)
    assert {j for j in dead if j in leased and j not in leased_by_killed} == set()
    # Completed jobs were acknowledged, or completed by a worker killed right after.
    assert completed - ok <= tried_by_killed


def test_stale_lease_cannot_complete_a_re_leased_job(
    replicas: list[BrokerProcess], pool: WorkerPool, rng: random.Random
) -> None:
    """Fencing across processes: a worker frozen mid-job past its lease wakes up while a
    second worker holds the job's next lease. Its Complete is refused and changes
    nothing; the second worker then completes the job."""
    a, b = replicas
    queue, work_ms = "fence", (500, 500)
    with stub_to(a) as stub:
        (job_id,) = enqueue(stub, 1, max_attempts=5, queue=queue)

        def job() -> job_pb2.Job:
            return stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job

        first = pool.start([a.target, b.target], batch=1, work_ms=work_ms, queue=queue)
        assert first.freeze_holding(rng) == {(job_id, 1)}
        # The lease expires, the broker takes it back, and the job goes to a new worker.
        second = pool.start([b.target, a.target], batch=1, work_ms=work_ms, queue=queue)
        assert second.freeze_holding(rng) == {(job_id, 2)}

        first.resume()
        outcome = wait_for_outcome(first)
        assert outcome.ok == [] and outcome.refused == [(job_id, 1)], "stale Complete accepted"
        current = job()
        assert (current.state, current.attempt) == (job_pb2.JOB_STATE_ACTIVE, 2)
        assert current.last_error.type == "LEASE_EXPIRED"

        second.resume()
        outcome = wait_for_outcome(second)
        assert outcome.ok == [(job_id, 2)] and outcome.refused == []
        final = job()
        assert (final.state, final.attempt) == (job_pb2.JOB_STATE_COMPLETED, 2)
        assert pool.stop_live() == {first.name: 0, second.name: 0}


def wait_for_outcome(worker: WorkerProcess, timeout_s: float = 10) -> Records:
    """The worker's log once it shows the outcome (OK or refused) of a Complete."""
    end = time.monotonic() + timeout_s
    while True:
        records = worker.records()
        if records.ok or records.refused:
            return records
        assert time.monotonic() < end, (
            f"no Complete outcome from {worker.name}\n{worker.stderr_tail()}"
        )
        time.sleep(0.01)
