"""Invariant 7: bad input gets a clear error and never a partial write.

Every case below calls a real broker over real gRPC, against a queue that already
holds jobs in every state, and checks three things:

- the gRPC status code;
- the google.rpc details: ErrorInfo (reason, domain) and, for INVALID_ARGUMENT, a
  BadRequest whose field violations name exactly the offending field paths;
- that nothing was written: every Redis key under the test's prefix (type and DUMP)
  is byte-identical before and after the call.
"""

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from redis.asyncio import Redis

Q = "q"
DOMAIN = "jobwire.dev"
MIB = 1 << 20
HOUR_S = 3_600
DAY_S = 86_400

INVALID = "INVALID_ARGUMENT"
TOO_LARGE = "PAYLOAD_TOO_LARGE"
# Size limits on fields other than payload/result are plain INVALID_ARGUMENT.
SIZE = INVALID

Snapshot = dict[bytes, tuple[bytes, bytes | None]]


# -- helpers -------------------------------------------------------------------------


async def snapshot(redis: Redis, prefix: str) -> Snapshot:
    """Every key under the prefix with its type and serialized value (DUMP)."""
    keys = sorted(await redis.keys(f"{prefix}:*"))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.type(key)
        pipe.dump(key)
    values = await pipe.execute()
    return {key: (values[2 * i], values[2 * i + 1]) for i, key in enumerate(keys)}


def changed_keys(before: Snapshot, after: Snapshot) -> set[bytes]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def assert_unchanged(before: Snapshot, after: Snapshot) -> None:
    changed = changed_keys(before, after)
    assert not changed, f"keys written by a rejected call: {sorted(changed)}"


@dataclass
class Rich:
    """A failed call's status with its google.rpc details unpacked."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    fields: list[str] = field(default_factory=list)
    descriptions: list[str] = field(default_factory=list)
    preconditions: list[error_details_pb2.PreconditionFailure.Violation] = field(
        default_factory=list
    )
    retry_info: bool = False


def rich(err: grpc.aio.AioRpcError) -> Rich:
    status = rpc_status.from_call(err)  # also checks code and message agree
    assert status is not None, f"no google.rpc.Status in trailers: {err!r}"
    out = Rich(err.code(), status.message)
    infos = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            infos.append(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.fields += [v.field for v in bad.field_violations]
            out.descriptions += [v.description for v in bad.field_violations]
        elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            detail.Unpack(pf)
            out.preconditions += list(pf.violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            out.retry_info = True
    assert len(infos) == 1, f"expected exactly one ErrorInfo, got {infos}"
    out.reason, out.domain = infos[0].reason, infos[0].domain
    return out


async def drain(call: Any) -> None:
    async for _ in call:
        pass


async def call_error(call: Awaitable[Any]) -> Rich:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return rich(caught.value)


async def rejected(
    redis: Redis,
    prefix: str,
    make_call: Callable[[], Awaitable[Any]],
    code: grpc.StatusCode,
    reason: str | tuple[str, ...],
    fields: Sequence[str] | None = None,
) -> Rich:
    """Runs one call that must fail; checks status, details, and that nothing changed."""
    before = await snapshot(redis, prefix)
    assert before, "the seeded queue should have keys"
    err = await call_error(make_call())
    assert err.code == code, err
    reasons = reason if isinstance(reason, tuple) else (reason,)
    assert err.reason in reasons, err
    assert err.domain == DOMAIN
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert fields is not None
        assert sorted(err.fields) == sorted(fields), err
        for f in err.fields:
            assert f in err.message, "the status message should name each field too"
    else:
        assert err.fields == [], "only INVALID_ARGUMENT carries a BadRequest"
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        assert [v.type for v in err.preconditions] == [err.reason]
    assert_unchanged(before, await snapshot(redis, prefix))
    return err


async def refused(
    redis: Redis, prefix: str, make_call: Callable[[], Awaitable[Any]], fields: list[str]
) -> None:
    """The call is INVALID_ARGUMENT naming exactly `fields`, and wrote nothing."""
    await rejected(redis, prefix, make_call, grpc.StatusCode.INVALID_ARGUMENT, INVALID, fields)


def job_key(prefix: str, job_id: str) -> bytes:
    queue, seq = job_id.rsplit(":", 1)
    return f"{prefix}:{{{queue}}}:job:{seq}".encode()


def queue_key(prefix: str, name: str) -> bytes:
    return f"{prefix}:{{{Q}}}:{name}".encode()


def events_key(prefix: str, job_id: str) -> bytes:
    return f"{prefix}:{{{Q}}}:events:{job_id.rsplit(':', 1)[1]}".encode()


def D(seconds: int = 0, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


def spec(**kwargs: Any) -> job_pb2.JobSpec:
    kwargs.setdefault("payload", b"x")
    return job_pb2.JobSpec(**kwargs)


# -- a queue with a job in every state ------------------------------------------------


@dataclass
class World:
    active: str  # leased twice; current token `token`, stale token `stale_token`
    token: str
    stale_token: str
    completed: str
    completed_token: str
    dead: str
    ready: str
    scheduled: str


async def lease_one(stub: rpc.BrokerServiceStub, expect: str) -> pb.LeasedJob:
    (leased,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    assert leased.job.id == expect
    return leased


@pytest.fixture
async def world(stub: rpc.BrokerServiceStub, redis: Redis, prefix: str) -> World:
    async def enqueue(**kwargs: Any) -> str:
        return (await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=spec(**kwargs)))).job_id

    # Active, leased twice: the first token is stale.
    active = await enqueue(payload=b"active")
    first = await lease_one(stub, active)
    await stub.Fail(
        pb.FailRequest(
            job_id=active,
            lease_token=first.lease_token,
            error=job_pb2.JobError(type="Flaky"),
            retry_delay=D(0),
        )
    )
    second = await lease_one(stub, active)
    assert second.attempt == 2 and second.lease_token != first.lease_token

    completed = await enqueue(payload=b"done")
    done = await lease_one(stub, completed)
    await stub.Complete(
        pb.CompleteRequest(job_id=completed, lease_token=done.lease_token, result=b"r")
    )

    dead = await enqueue(payload=b"dead")
    doomed = await lease_one(stub, dead)
    await stub.Fail(
        pb.FailRequest(
            job_id=dead,
            lease_token=doomed.lease_token,
            error=job_pb2.JobError(type="Fatal", non_retryable=True),
        )
    )

    ready = await enqueue(payload=b"ready", idempotency_key="k1")
    scheduled = await enqueue(payload=b"later", delay=D(HOUR_S))

    # Mark the active job watched, as StreamProgress does (watch.lua; set directly because
    # a real subscription costs ~40 ms per test), so any change to it would also append
    # to its event stream; the heartbeat gives that stream a first entry.
    await redis.hset(job_key(prefix, active), "watched", "1")
    await stub.Heartbeat(
        pb.HeartbeatRequest(
            job_id=active, lease_token=second.lease_token, progress=job_pb2.Progress(percent=5)
        )
    )
    assert await redis.xlen(events_key(prefix, active)) == 1
    return World(
        active=active,
        token=second.lease_token,
        stale_token=first.lease_token,
        completed=completed,
        completed_token=done.lease_token,
        dead=dead,
        ready=ready,
        scheduled=scheduled,
    )


# -- JobSpec limits: Enqueue, and the same job in the middle of an EnqueueBatch ----------


@dataclass(frozen=True)
class SpecCase:
    id: str
    job: dict[str, Any]
    fields: tuple[str, ...]  # relative to the job
    reason: str | tuple[str, ...] = INVALID


def BP(**kwargs: Any) -> job_pb2.BackoffPolicy:
    return job_pb2.BackoffPolicy(**kwargs)


SPEC_CASES = [
    SpecCase("payload_over_limit", {"payload": b"x" * (MIB + 1)}, ("payload",), TOO_LARGE),
    SpecCase("priority_1001", {"priority": 1001}, ("priority",)),
    SpecCase("priority_-1001", {"priority": -1001}, ("priority",)),
    SpecCase("max_attempts_-1", {"max_attempts": -1}, ("max_attempts",)),
    SpecCase("max_attempts_1001", {"max_attempts": 1001}, ("max_attempts",)),
    SpecCase("delay_negative", {"delay": D(-1)}, ("delay",)),
    SpecCase("delay_negative_nanos", {"delay": D(0, -1)}, ("delay",)),
    SpecCase("delay_over_365d", {"delay": D(365 * DAY_S + 1)}, ("delay",)),
    SpecCase("lease_duration_negative", {"lease_duration": D(-1)}, ("lease_duration",)),
    SpecCase("lease_duration_999ms", {"lease_duration": D(0, 999_000_000)}, ("lease_duration",)),
    SpecCase(
        "lease_duration_over_12h", {"lease_duration": D(12 * HOUR_S + 1)}, ("lease_duration",)
    ),
    SpecCase("execution_timeout_negative", {"execution_timeout": D(-1)}, ("execution_timeout",)),
    SpecCase(
        "execution_timeout_under_1s",
        {"execution_timeout": D(0, 500_000_000)},
        ("execution_timeout",),
    ),
    SpecCase(
        "execution_timeout_over_7d", {"execution_timeout": D(7 * DAY_S + 1)}, ("execution_timeout",)
    ),
    SpecCase("idempotency_window_negative", {"idempotency_window": D(-1)}, ("idempotency_window",)),
    SpecCase(
        "idempotency_window_under_1s", {"idempotency_window": D(0, 1)}, ("idempotency_window",)
    ),
    SpecCase(
        "idempotency_window_over_30d",
        {"idempotency_window": D(30 * DAY_S + 1)},
        ("idempotency_window",),
    ),
    SpecCase("run_time_before_1970", {"run_time": Timestamp(seconds=-1)}, ("run_time",)),
    SpecCase("backoff_kind_99", {"backoff": BP(kind=99)}, ("backoff.kind",)),
    SpecCase("backoff_kind_-1", {"backoff": BP(kind=-1)}, ("backoff.kind",)),
    SpecCase(
        "backoff_initial_delay_negative",
        {"backoff": BP(initial_delay=D(-1))},
        ("backoff.initial_delay",),
    ),
    SpecCase(
        "backoff_initial_delay_over_7d",
        {"backoff": BP(initial_delay=D(7 * DAY_S + 1))},
        ("backoff.initial_delay",),
    ),
    SpecCase(
        "backoff_max_delay_negative", {"backoff": BP(max_delay=D(0, -5))}, ("backoff.max_delay",)
    ),
    SpecCase(
        "backoff_max_delay_over_7d", {"backoff": BP(max_delay=D(8 * DAY_S))}, ("backoff.max_delay",)
    ),
    SpecCase("backoff_multiplier_0.5", {"backoff": BP(multiplier=0.5)}, ("backoff.multiplier",)),
    SpecCase("backoff_multiplier_-2", {"backoff": BP(multiplier=-2)}, ("backoff.multiplier",)),
    SpecCase("backoff_multiplier_101", {"backoff": BP(multiplier=101)}, ("backoff.multiplier",)),
    SpecCase(
        "backoff_multiplier_nan", {"backoff": BP(multiplier=math.nan)}, ("backoff.multiplier",)
    ),
    SpecCase(
        "backoff_multiplier_inf", {"backoff": BP(multiplier=math.inf)}, ("backoff.multiplier",)
    ),
    SpecCase("backoff_jitter_-0.1", {"backoff": BP(jitter=-0.1)}, ("backoff.jitter",)),
    SpecCase("backoff_jitter_1.5", {"backoff": BP(jitter=1.5)}, ("backoff.jitter",)),
    SpecCase("backoff_jitter_nan", {"backoff": BP(jitter=math.nan)}, ("backoff.jitter",)),
    SpecCase("headers_65_entries", {"headers": {f"h{i}": "v" for i in range(65)}}, ("headers",)),
    SpecCase("header_empty_key", {"headers": {"": "v"}}, ("headers",)),
    SpecCase("header_value_4097_bytes", {"headers": {"big": "v" * 4097}}, ("headers[big]",), SIZE),
    SpecCase(
        "header_key_257_bytes", {"headers": {"k" * 257: "v"}}, (f"headers[{'k' * 64}]",), SIZE
    ),
    SpecCase("content_type_129_bytes", {"content_type": "a" * 129}, ("content_type",), SIZE),
    SpecCase(
        "idempotency_key_257_bytes", {"idempotency_key": "i" * 257}, ("idempotency_key",), SIZE
    ),
    SpecCase(
        "traceparent_257_bytes",
        {"trace_context": job_pb2.TraceContext(traceparent="0" * 257)},
        ("trace_context.traceparent",),
        SIZE,
    ),
    *(
        SpecCase(
            f"traceparent_{name}",
            {"trace_context": job_pb2.TraceContext(traceparent=value)},
            ("trace_context.traceparent",),
        )
        for name, value in [
            ("garbage", "garbage"),
            ("uppercase", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"),
            ("zero_trace_id", f"00-{'0' * 32}-b7ad6b7169203331-01"),
            ("zero_span_id", f"00-0af7651916cd43dd8448eb211c80319c-{'0' * 16}-01"),
            ("version_ff", "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ("v00_extra_field", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"),
            ("short_span", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01"),
        ]
    ),
    # Start deadlines and idempotency modes (tests/test_deadlines.py has the rest).
    SpecCase("start_deadline_past", {"start_deadline": Timestamp(seconds=1)}, ("start_deadline",)),
    SpecCase("start_deadline_epoch", {"start_deadline": Timestamp()}, ("start_deadline",)),
    SpecCase(
        "start_deadline_before_run_time",
        {
            "run_time": Timestamp(seconds=4_000_000_100),
            "start_deadline": Timestamp(seconds=4_000_000_000),
        },
        ("start_deadline",),
    ),
    SpecCase(
        "start_deadline_year_10000",
        {"start_deadline": Timestamp(seconds=253_402_300_800)},
        ("start_deadline",),
    ),
    SpecCase("idempotency_mode_99", {"idempotency_mode": 99}, ("idempotency_mode",)),
    SpecCase(
        "several_at_once",
        {"payload": b"x" * (MIB + 1), "priority": 5000, "max_attempts": -3},
        ("payload", "priority", "max_attempts"),
        TOO_LARGE,
    ),
]


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.id)
async def test_enqueue_rejects_bad_job(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, case: SpecCase
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: stub.Enqueue(pb.EnqueueRequest(queue=Q, job=spec(**case.job))),
        grpc.StatusCode.INVALID_ARGUMENT,
        case.reason,
        [f"job.{f}" for f in case.fields],
    )


@pytest.mark.parametrize("case", SPEC_CASES, ids=lambda c: c.id)
async def test_enqueue_batch_with_one_bad_job_writes_nothing(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, case: SpecCase
) -> None:
    jobs = [spec(payload=b"good"), spec(priority=7), spec(**case.job), spec()]
    await rejected(
        redis,
        prefix,
        lambda: stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=jobs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        case.reason,
        [f"jobs[2].{f}" for f in case.fields],
    )


async def test_enqueue_batch_names_every_bad_job(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    jobs = [spec(priority=-2000), spec(), spec(backoff=BP(kind=99)), spec(max_attempts=1001)]
    await rejected(
        redis,
        prefix,
        lambda: stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=jobs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["jobs[0].priority", "jobs[2].backoff.kind", "jobs[3].max_attempts"],
    )


@pytest.mark.parametrize("count", [0, 1001], ids=["empty", "1001_jobs"])
async def test_enqueue_batch_size_limits(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, count: int
) -> None:
    jobs = [spec() for _ in range(count)]
    await rejected(
        redis,
        prefix,
        lambda: stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=jobs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["jobs"],
    )


async def test_enqueue_without_job_is_rejected_and_an_empty_job_is_not(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    """The proto says `job` is required; a set but empty JobSpec (empty payload, every
    option at its default) is a valid job."""
    await rejected(
        redis,
        prefix,
        lambda: stub.Enqueue(pb.EnqueueRequest(queue=Q)),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["job"],
    )
    response = await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=job_pb2.JobSpec()))
    assert response.state == job_pb2.JOB_STATE_READY


async def test_zero_durations_and_times_mean_the_defaults(stub: rpc.BrokerServiceStub) -> None:
    """Every JobSpec field present at its zero value (what grpcurl -msg-template writes)
    is the documented default, as the proto says of zero values."""
    zero = job_pb2.JobSpec(
        delay=D(0),
        run_time=Timestamp(),
        backoff=BP(max_delay=D(0)),
        lease_duration=D(0),
        execution_timeout=D(0),
        idempotency_window=D(0),
        trace_context=job_pb2.TraceContext(),
    )
    response = await stub.Enqueue(pb.EnqueueRequest(queue=Q, job=zero))
    assert response.state == job_pb2.JOB_STATE_READY
    job = (await stub.GetJob(pb.GetJobRequest(job_id=response.job_id))).job
    assert job.spec.max_attempts == 3
    assert job.spec.lease_duration.ToMilliseconds() == 30_000
    assert not job.spec.HasField("execution_timeout")
    assert job.spec.backoff.kind == job_pb2.BACKOFF_KIND_EXPONENTIAL
    assert job.spec.backoff.initial_delay.ToMilliseconds() == 1_000  # unset: 1 s
    assert job.spec.backoff.max_delay.ToMilliseconds() == 3_600_000
    (held,) = (await stub.Lease(pb.LeaseRequest(queue=Q))).jobs
    beat = await stub.Heartbeat(
        pb.HeartbeatRequest(job_id=held.job.id, lease_token=held.lease_token, lease_extension=D(0))
    )  # zero: the job's own lease duration
    assert beat.lease_expire_time.ToMilliseconds() > held.lease_expire_time.ToMilliseconds() - 1


async def test_limits_are_inclusive(stub: rpc.BrokerServiceStub) -> None:
    """The documented bounds themselves are accepted (so the cases above are tight)."""
    bounds = spec(
        payload=b"x" * MIB,
        priority=1000,
        max_attempts=1000,
        delay=D(365 * DAY_S),
        lease_duration=D(12 * HOUR_S),
        execution_timeout=D(7 * DAY_S),
        idempotency_window=D(30 * DAY_S),
        idempotency_key="i" * 256,
        content_type="a" * 128,
        headers={**{f"h{i}": "v" for i in range(63)}, "k" * 256: "v" * 4096},
        backoff=BP(
            kind=job_pb2.BACKOFF_KIND_LINEAR,
            multiplier=100,
            jitter=1,
            initial_delay=D(7 * DAY_S),
            max_delay=D(7 * DAY_S),
        ),
    )
    low = spec(
        priority=-1000,
        max_attempts=1,
        lease_duration=D(1),
        execution_timeout=D(1),
        idempotency_window=D(1),
        backoff=BP(multiplier=1, jitter=0),
    )
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=Q, jobs=[bounds, low]))
    await stub.Lease(pb.LeaseRequest(queue=Q, max_jobs=1000, wait=D(0)))


# -- queue names ---------------------------------------------------------------------

BAD_QUEUES = {
    "empty": "",
    "129_chars": "q" * 129,
    "space": "my queue",
    "brace": "{q}",
    "colon": "a:b",
    "leading_dash": "-q",
    "leading_dot": ".q",
    "trailing_newline": "q\n",
    "non_ascii": "qé",
}


def queue_call(stub: rpc.BrokerServiceStub, method: str, queue: str) -> Awaitable[Any]:
    if method == "Enqueue":
        return stub.Enqueue(pb.EnqueueRequest(queue=queue, job=spec()))
    if method == "EnqueueBatch":
        return stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=queue, jobs=[spec(), spec()]))
    return stub.Lease(pb.LeaseRequest(queue=queue))


@pytest.mark.parametrize("method", ["Enqueue", "EnqueueBatch", "Lease"])
@pytest.mark.parametrize("queue", BAD_QUEUES.values(), ids=BAD_QUEUES.keys())
async def test_bad_queue_name(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, method: str, queue: str
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: queue_call(stub, method, queue),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["queue"],
    )


async def test_longest_queue_name_is_accepted(stub: rpc.BrokerServiceStub) -> None:
    name = "Q" + "a_b-c.9" * 18 + "x"
    assert len(name) == 128
    job_id = (await stub.Enqueue(pb.EnqueueRequest(queue=name, job=spec()))).job_id
    assert job_id == f"{name}:1"
    assert (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.queue == name


# -- Lease ---------------------------------------------------------------------------

LEASE_CASES = {
    "max_jobs_-1": ({"max_jobs": -1}, ["max_jobs"], INVALID),
    "max_jobs_1001": ({"max_jobs": 1001}, ["max_jobs"], INVALID),
    "wait_negative": ({"wait": D(-1)}, ["wait"], INVALID),
    "wait_61s": ({"wait": D(61)}, ["wait"], INVALID),
    "worker_id_257_bytes": ({"worker_id": "w" * 257}, ["worker_id"], SIZE),
}


@pytest.mark.parametrize(
    ("request_kwargs", "fields", "reason"), LEASE_CASES.values(), ids=LEASE_CASES.keys()
)
async def test_lease_rejects(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    request_kwargs: dict[str, Any],
    fields: list[str],
    reason: str | tuple[str, ...],
) -> None:
    # The queue has a ready job: a lease that got through would take it.
    await rejected(
        redis,
        prefix,
        lambda: stub.Lease(pb.LeaseRequest(queue=Q, **request_kwargs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        fields,
    )


# -- Heartbeat, Complete, Fail: field limits ---------------------------------------------


def _progress_details(size: int) -> Struct:
    s = Struct()
    s.update({"blob": "d" * size})
    return s


def _nan_details() -> Struct:
    s = Struct()
    s.update({"x": math.nan})
    return s


HEARTBEAT_CASES: dict[str, tuple[dict[str, Any], list[str], Any]] = {
    "lease_extension_negative": ({"lease_extension": D(-1)}, ["lease_extension"], INVALID),
    "lease_extension_negative_nanos": ({"lease_extension": D(0, -1)}, ["lease_extension"], INVALID),
    "lease_extension_999ms": ({"lease_extension": D(0, 999_000_000)}, ["lease_extension"], INVALID),
    "lease_extension_over_12h": (
        {"lease_extension": D(12 * HOUR_S + 1)},
        ["lease_extension"],
        INVALID,
    ),
    "percent_101": ({"progress": job_pb2.Progress(percent=101)}, ["progress.percent"], INVALID),
    "percent_-1": ({"progress": job_pb2.Progress(percent=-1)}, ["progress.percent"], INVALID),
    "percent_nan": (
        {"progress": job_pb2.Progress(percent=math.nan)},
        ["progress.percent"],
        INVALID,
    ),
    "progress_message_1025_bytes": (
        {"progress": job_pb2.Progress(message="m" * 1025)},
        ["progress.message"],
        SIZE,
    ),
    "progress_details_over_16k": (
        {"progress": job_pb2.Progress(details=_progress_details(16_384))},
        ["progress.details"],
        SIZE,
    ),
    "lease_token_empty": ({"lease_token": ""}, ["lease_token"], INVALID),
    "lease_token_129_bytes": ({"lease_token": "t" * 129}, ["lease_token"], SIZE),
}


@pytest.mark.parametrize(
    ("overrides", "fields", "reason"), HEARTBEAT_CASES.values(), ids=HEARTBEAT_CASES.keys()
)
async def test_heartbeat_rejects(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    overrides: dict[str, Any],
    fields: list[str],
    reason: Any,
) -> None:
    """Against the live lease: a heartbeat that got through would extend it."""
    kwargs = {"job_id": world.active, "lease_token": world.token, **overrides}
    await rejected(
        redis,
        prefix,
        lambda: stub.Heartbeat(pb.HeartbeatRequest(**kwargs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        fields,
    )


async def test_heartbeat_progress_details_nan(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    progress = job_pb2.Progress(percent=1, details=_nan_details())
    await rejected(
        redis,
        prefix,
        lambda: stub.Heartbeat(
            pb.HeartbeatRequest(job_id=world.active, lease_token=world.token, progress=progress)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["progress.details"],
    )


COMPLETE_CASES: dict[str, tuple[dict[str, Any], list[str], Any]] = {
    "result_over_limit": ({"result": b"r" * (MIB + 1)}, ["result"], TOO_LARGE),
    "result_content_type_129_bytes": (
        {"result_content_type": "c" * 129},
        ["result_content_type"],
        SIZE,
    ),
    "lease_token_empty": ({"lease_token": ""}, ["lease_token"], INVALID),
}


@pytest.mark.parametrize(
    ("overrides", "fields", "reason"), COMPLETE_CASES.values(), ids=COMPLETE_CASES.keys()
)
async def test_complete_rejects(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    overrides: dict[str, Any],
    fields: list[str],
    reason: Any,
) -> None:
    kwargs = {"job_id": world.active, "lease_token": world.token, "result": b"ok", **overrides}
    await rejected(
        redis,
        prefix,
        lambda: stub.Complete(pb.CompleteRequest(**kwargs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        fields,
    )


FAIL_CASES: dict[str, tuple[dict[str, Any], list[str], Any]] = {
    "no_error": ({"error": None}, ["error", "error.type"], INVALID),
    "error_type_empty": ({"error": job_pb2.JobError(message="boom")}, ["error.type"], INVALID),
    "error_type_257_bytes": ({"error": job_pb2.JobError(type="T" * 257)}, ["error.type"], SIZE),
    "error_message_over_8k": (
        {"error": job_pb2.JobError(type="T", message="m" * 8193)},
        ["error.message"],
        SIZE,
    ),
    "retry_delay_negative": ({"retry_delay": D(-1)}, ["retry_delay"], INVALID),
    "retry_delay_over_365d": ({"retry_delay": D(365 * DAY_S + 1)}, ["retry_delay"], INVALID),
    "lease_token_empty": ({"lease_token": ""}, ["lease_token"], INVALID),
}


@pytest.mark.parametrize(
    ("overrides", "fields", "reason"), FAIL_CASES.values(), ids=FAIL_CASES.keys()
)
async def test_fail_rejects(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    overrides: dict[str, Any],
    fields: list[str],
    reason: Any,
) -> None:
    kwargs = {
        "job_id": world.active,
        "lease_token": world.token,
        "error": job_pb2.JobError(type="Boom"),
        **overrides,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    await rejected(
        redis,
        prefix,
        lambda: stub.Fail(pb.FailRequest(**kwargs)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        fields,
    )


# -- malformed and unknown job ids ------------------------------------------------------

BAD_JOB_IDS = {
    "empty": "",
    "no_colon": "q1",
    "non_numeric_seq": "q:abc",
    "empty_seq": "q:",
    "empty_queue": ":1",
    "negative_seq": "q:-1",
    "fractional_seq": "q:1.5",
    "seq_with_space": "q: 1",
    "non_ascii_digit_seq": "q:\uff11",
    "bad_queue": "bad queue:1",
    "leading_zero_seq": "q:01",
    "zero_seq": "q:0",
}

JOB_ID_METHODS = [
    "GetJob",
    "CancelJob",
    "Heartbeat",
    "Complete",
    "Fail",
    "ReleaseLease",
    "StreamProgress",
]


def by_job_id(
    stub: rpc.BrokerServiceStub, method: str, job_id: str, token: str = "token"
) -> Awaitable[Any]:
    if method == "GetJob":
        return stub.GetJob(pb.GetJobRequest(job_id=job_id))
    if method == "CancelJob":
        return stub.CancelJob(pb.CancelJobRequest(job_id=job_id))
    if method == "Heartbeat":
        return stub.Heartbeat(
            pb.HeartbeatRequest(
                job_id=job_id, lease_token=token, progress=job_pb2.Progress(percent=50)
            )
        )
    if method == "Complete":
        return stub.Complete(pb.CompleteRequest(job_id=job_id, lease_token=token, result=b"r"))
    if method == "Fail":
        return stub.Fail(
            pb.FailRequest(
                job_id=job_id, lease_token=token, error=job_pb2.JobError(type="E"), retry_delay=D(0)
            )
        )
    if method == "ReleaseLease":
        return stub.ReleaseLease(pb.ReleaseLeaseRequest(job_id=job_id, lease_token=token))
    assert method == "StreamProgress"
    return drain(stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id)))


@pytest.mark.parametrize("method", JOB_ID_METHODS)
@pytest.mark.parametrize("job_id", BAD_JOB_IDS.values(), ids=BAD_JOB_IDS.keys())
async def test_malformed_job_id(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    method: str,
    job_id: str,
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: by_job_id(stub, method, job_id, world.token),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["job_id"],
    )


UNKNOWN_JOB_IDS = {"unknown_seq": f"{Q}:999999", "unknown_queue": "nosuchqueue:1"}


@pytest.mark.parametrize("method", JOB_ID_METHODS)
@pytest.mark.parametrize("job_id", UNKNOWN_JOB_IDS.values(), ids=UNKNOWN_JOB_IDS.keys())
async def test_unknown_job_is_not_found(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    method: str,
    job_id: str,
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: by_job_id(stub, method, job_id, world.token),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
    )
    assert job_id in err.message


# -- StreamProgress resume tokens -------------------------------------------------------

BAD_EVENT_IDS = {
    "word": "abc",
    "no_dash": "12",
    "trailing_dash": "1-",
    "leading_dash": "-1",
    "three_parts": "1-2-3",
    "leading_space": " 1-1",
    "plus": "+",
}


@pytest.mark.parametrize("after", BAD_EVENT_IDS.values(), ids=BAD_EVENT_IDS.keys())
async def test_stream_progress_bad_after_event_id(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, after: str
) -> None:
    """Against a job nobody watches yet: a call that got through would mark it watched."""
    await rejected(
        redis,
        prefix,
        lambda: drain(
            stub.StreamProgress(pb.StreamProgressRequest(job_id=world.ready, after_event_id=after))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["after_event_id"],
    )


BUGGY_EVENT_IDS = {
    "non_ascii_digits": "\u0661-\u0661",
    "overflowing_uint64": "99999999999999999999999-0",
}


@pytest.mark.parametrize("after", BUGGY_EVENT_IDS.values(), ids=BUGGY_EVENT_IDS.keys())
async def test_stream_progress_event_id_that_passes_the_regex(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, after: str
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: drain(
            stub.StreamProgress(pb.StreamProgressRequest(job_id=world.ready, after_event_id=after))
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["after_event_id"],
    )


# -- lease tokens: FAILED_PRECONDITION / LEASE_LOST, nothing written ----------------------

LEASE_METHODS = ["Heartbeat", "Complete", "Fail", "ReleaseLease"]


def lost_lease_targets(w: World) -> dict[str, tuple[str, str]]:
    return {
        "wrong_token": (w.active, "not-a-token"),
        "stale_token_of_earlier_attempt": (w.active, w.stale_token),
        "token_of_another_job": (w.active, w.completed_token),
        "completed_job_with_its_old_token": (w.completed, w.completed_token),
        "ready_job": (w.ready, w.token),
        "scheduled_job": (w.scheduled, w.token),
        "dead_job": (w.dead, w.token),
    }


LOST_TARGETS = [
    "wrong_token",
    "stale_token_of_earlier_attempt",
    "token_of_another_job",
    "completed_job_with_its_old_token",
    "ready_job",
    "scheduled_job",
    "dead_job",
]


# A token retried on the settlement it already made is answered as the first time
# (test_settlement_retried_with_its_token_is_answered_again), not LEASE_LOST.
REPLAYS = {
    ("stale_token_of_earlier_attempt", "Fail"),
    ("completed_job_with_its_old_token", "Complete"),
}
LOST_CASES = [(t, m) for t in LOST_TARGETS for m in LEASE_METHODS if (t, m) not in REPLAYS]


@pytest.mark.parametrize(("target", "method"), LOST_CASES)
async def test_lease_lost(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    method: str,
    target: str,
) -> None:
    job_id, token = lost_lease_targets(world)[target]
    err = await rejected(
        redis,
        prefix,
        lambda: by_job_id(stub, method, job_id, token),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LEASE_LOST",
    )
    assert job_id in err.message
    assert not err.retry_info


async def test_lease_lost_leaves_the_job_hash_unchanged(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    """The job's own hash, field by field (the snapshot above compares DUMPs)."""
    key = f"{prefix}:{{{Q}}}:job:{world.active.rsplit(':', 1)[1]}"
    before = await redis.hgetall(key)
    assert before[b"state"] == b"active" and before[b"token"] == world.token.encode()
    for method in LEASE_METHODS:
        if ("stale_token_of_earlier_attempt", method) not in REPLAYS:
            await call_error(by_job_id(stub, method, world.active, world.stale_token))
    assert await redis.hgetall(key) == before


@pytest.mark.parametrize(("target", "method"), sorted(REPLAYS))
async def test_settlement_retried_with_its_token_is_answered_again(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    target: str,
    method: str,
) -> None:
    """Its first reply lost, a worker retries the Complete or Fail it already made: OK
    again, and nothing at all is written."""
    job_id, token = lost_lease_targets(world)[target]
    before = await snapshot(redis, prefix)
    await by_job_id(stub, method, job_id, token)
    assert_unchanged(before, await snapshot(redis, prefix))


async def test_double_complete_is_answered_again_and_changes_nothing(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    leased = await lease_one(stub, world.ready)
    await stub.Complete(
        pb.CompleteRequest(
            job_id=world.ready,
            lease_token=leased.lease_token,
            result=b"first",
            result_content_type="text/plain",
        )
    )
    # The same Complete again (its reply lost, say) is answered OK and writes nothing.
    before = await snapshot(redis, prefix)
    await stub.Complete(
        pb.CompleteRequest(job_id=world.ready, lease_token=leased.lease_token, result=b"second")
    )
    assert_unchanged(before, await snapshot(redis, prefix))
    for again in (
        lambda: stub.Fail(
            pb.FailRequest(
                job_id=world.ready,
                lease_token=leased.lease_token,
                error=job_pb2.JobError(type="Late"),
            )
        ),
        lambda: stub.Heartbeat(
            pb.HeartbeatRequest(job_id=world.ready, lease_token=leased.lease_token)
        ),
    ):
        await rejected(redis, prefix, again, grpc.StatusCode.FAILED_PRECONDITION, "LEASE_LOST")
    job = (await stub.GetJob(pb.GetJobRequest(job_id=world.ready))).job
    assert job.state == job_pb2.JOB_STATE_COMPLETED
    assert (job.result, job.result_content_type) == (b"first", "text/plain")
    assert not job.HasField("last_error")


# -- CancelJob of a finished job ----------------------------------------------------------


@pytest.mark.parametrize("which", ["completed", "dead"])
async def test_cancel_finished_job(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World, which: str
) -> None:
    job_id = getattr(world, which)
    err = await rejected(
        redis,
        prefix,
        lambda: stub.CancelJob(pb.CancelJobRequest(job_id=job_id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_FINISHED",
    )
    assert job_id in err.message and which in err.message


async def test_cancel_finished_job_precondition_names_the_job(
    stub: rpc.BrokerServiceStub, world: World
) -> None:
    err = await call_error(stub.CancelJob(pb.CancelJobRequest(job_id=world.completed)))
    assert [v.subject for v in err.preconditions] != ["lease_token"]


# -- batch calls: malformed items reject the whole call -------------------------------------


async def test_heartbeat_batch_empty(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: stub.HeartbeatBatch(pb.HeartbeatBatchRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["heartbeats"],
    )


async def test_heartbeat_batch_over_1000(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    item = pb.HeartbeatRequest(job_id=world.active, lease_token=world.token)
    await rejected(
        redis,
        prefix,
        lambda: stub.HeartbeatBatch(pb.HeartbeatBatchRequest(heartbeats=[item] * 1001)),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["heartbeats"],
    )


async def test_settle_batch_empty(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: stub.SettleBatch(pb.SettleBatchRequest()),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        ["settlements"],
    )


def _hb(job_id: str, token: str, **kwargs: Any) -> pb.HeartbeatRequest:
    return pb.HeartbeatRequest(job_id=job_id, lease_token=token, **kwargs)


HEARTBEAT_BATCH_BAD_ITEMS: dict[str, tuple[int, dict[str, Any], list[str]]] = {
    "bad_job_id": (1, {"job_id": "nocolon"}, ["heartbeats[1].job_id"]),
    "empty_token": (0, {"lease_token": ""}, ["heartbeats[0].lease_token"]),
    "negative_extension": (2, {"lease_extension": D(-1)}, ["heartbeats[2].lease_extension"]),
    "percent_200": (
        1,
        {"progress": job_pb2.Progress(percent=200)},
        ["heartbeats[1].progress.percent"],
    ),
}


@pytest.mark.parametrize(
    ("index", "overrides", "fields"),
    HEARTBEAT_BATCH_BAD_ITEMS.values(),
    ids=HEARTBEAT_BATCH_BAD_ITEMS.keys(),
)
async def test_heartbeat_batch_with_one_malformed_item_writes_nothing(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    index: int,
    overrides: dict[str, Any],
    fields: list[str],
) -> None:
    items = [
        {
            "job_id": world.active,
            "lease_token": world.token,
            "progress": job_pb2.Progress(percent=60),
        }
        for _ in range(3)
    ]
    items[index].update(overrides)
    request = pb.HeartbeatBatchRequest(heartbeats=[pb.HeartbeatRequest(**i) for i in items])
    await rejected(
        redis,
        prefix,
        lambda: stub.HeartbeatBatch(request),
        grpc.StatusCode.INVALID_ARGUMENT,
        INVALID,
        fields,
    )


def _settle_items(w: World) -> list[pb.Settlement]:
    return [
        pb.Settlement(complete=pb.CompleteRequest(job_id=w.active, lease_token=w.token)),
        pb.Settlement(
            fail=pb.FailRequest(
                job_id=w.active, lease_token=w.token, error=job_pb2.JobError(type="E")
            )
        ),
        pb.Settlement(complete=pb.CompleteRequest(job_id=w.active, lease_token=w.token)),
    ]


SETTLE_BAD_ITEMS: dict[str, tuple[int, pb.Settlement | None, list[str], Any]] = {
    "neither_complete_nor_fail": (1, pb.Settlement(), ["settlements[1]"], INVALID),
    "fail_without_error_type": (
        1,
        pb.Settlement(
            fail=pb.FailRequest(job_id="q:1", lease_token="t", error=job_pb2.JobError(message="m"))
        ),
        ["settlements[1].fail.error.type"],
        INVALID,
    ),
    "fail_without_error": (
        2,
        pb.Settlement(fail=pb.FailRequest(job_id="q:1", lease_token="t")),
        ["settlements[2].fail.error", "settlements[2].fail.error.type"],
        INVALID,
    ),
    "complete_bad_job_id": (
        0,
        pb.Settlement(complete=pb.CompleteRequest(job_id="q:x", lease_token="t")),
        ["settlements[0].complete.job_id"],
        INVALID,
    ),
    "complete_result_too_large": (
        2,
        pb.Settlement(
            complete=pb.CompleteRequest(job_id="q:1", lease_token="t", result=b"r" * (MIB + 1))
        ),
        ["settlements[2].complete.result"],
        TOO_LARGE,
    ),
    "fail_negative_retry_delay": (
        1,
        pb.Settlement(
            fail=pb.FailRequest(
                job_id="q:1", lease_token="t", error=job_pb2.JobError(type="E"), retry_delay=D(-3)
            )
        ),
        ["settlements[1].fail.retry_delay"],
        INVALID,
    ),
}


@pytest.mark.parametrize(
    ("index", "bad", "fields", "reason"), SETTLE_BAD_ITEMS.values(), ids=SETTLE_BAD_ITEMS.keys()
)
async def test_settle_batch_with_one_malformed_item_writes_nothing(
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
    world: World,
    index: int,
    bad: pb.Settlement,
    fields: list[str],
    reason: Any,
) -> None:
    items = _settle_items(world)
    items[index] = bad
    await rejected(
        redis,
        prefix,
        lambda: stub.SettleBatch(pb.SettleBatchRequest(settlements=items)),
        grpc.StatusCode.INVALID_ARGUMENT,
        reason,
        fields,
    )


# -- batch calls: per-item statuses, good items still succeed -------------------------------


async def test_heartbeat_batch_reports_each_item(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    before = await snapshot(redis, prefix)
    old_deadline = int(await redis.hget(job_key(prefix, world.active), "lease_until_ms"))
    response = await stub.HeartbeatBatch(
        pb.HeartbeatBatchRequest(
            heartbeats=[
                _hb(world.active, world.stale_token, progress=job_pb2.Progress(percent=99)),
                _hb(world.active, world.token, lease_extension=D(HOUR_S)),
                _hb(f"{Q}:999999", world.token),
                _hb(world.completed, world.completed_token),
                _hb("other:5", world.token),
            ]
        )
    )
    statuses = [(r.status.code, r.status.reason) for r in response.results]
    assert statuses == [
        (grpc.StatusCode.FAILED_PRECONDITION.value[0], "LEASE_LOST"),
        (0, ""),
        (grpc.StatusCode.NOT_FOUND.value[0], "JOB_NOT_FOUND"),
        (grpc.StatusCode.FAILED_PRECONDITION.value[0], "LEASE_LOST"),
        (grpc.StatusCode.NOT_FOUND.value[0], "JOB_NOT_FOUND"),
    ]
    assert statuses[0][0] == 9 and statuses[2][0] == 5
    for i, r in enumerate(response.results):
        assert r.status.message if i != 1 else not r.status.message
        assert r.HasField("lease_expire_time") == (i == 1)
    new_deadline = int(await redis.hget(job_key(prefix, world.active), "lease_until_ms"))
    assert new_deadline > old_deadline + 3_000_000
    assert response.results[1].lease_expire_time.ToMilliseconds() == new_deadline
    # Only the good item's lease moved; the stale one's progress was not recorded.
    after = await snapshot(redis, prefix)
    assert changed_keys(before, after) == {
        job_key(prefix, world.active),
        queue_key(prefix, "active"),
    }
    assert await redis.hget(job_key(prefix, world.active), "progress.percent") == b"5.0"


async def test_settle_batch_reports_each_item(
    stub: rpc.BrokerServiceStub, redis: Redis, prefix: str, world: World
) -> None:
    second = await lease_one(stub, world.ready)
    before = await snapshot(redis, prefix)
    response = await stub.SettleBatch(
        pb.SettleBatchRequest(
            settlements=[
                pb.Settlement(
                    complete=pb.CompleteRequest(
                        job_id=world.active, lease_token=world.token, result=b"good"
                    )
                ),
                pb.Settlement(
                    complete=pb.CompleteRequest(
                        job_id=world.completed, lease_token=world.completed_token, result=b"again"
                    )
                ),
                pb.Settlement(
                    fail=pb.FailRequest(
                        job_id=f"{Q}:999999",
                        lease_token=world.token,
                        error=job_pb2.JobError(type="E"),
                    )
                ),
                pb.Settlement(
                    fail=pb.FailRequest(
                        job_id=world.ready,
                        lease_token=second.lease_token,
                        error=job_pb2.JobError(type="E"),
                        retry_delay=D(HOUR_S),
                    )
                ),
                pb.Settlement(
                    fail=pb.FailRequest(
                        job_id=world.active,
                        lease_token=world.stale_token,
                        error=job_pb2.JobError(type="Stale"),
                    )
                ),
                pb.Settlement(complete=pb.CompleteRequest(job_id="other:1", lease_token="t")),
            ]
        )
    )
    statuses = [(r.status.code, r.status.reason) for r in response.results]
    assert statuses == [
        (0, ""),
        (0, ""),  # the completed job's own Complete again: answered as the first time
        (5, "JOB_NOT_FOUND"),
        (0, ""),
        (9, "LEASE_LOST"),
        (5, "JOB_NOT_FOUND"),
    ]
    assert response.results[3].fail.state == job_pb2.JOB_STATE_SCHEDULED
    assert response.results[3].fail.HasField("retry_time")
    assert not response.results[4].HasField("fail")

    active = (await stub.GetJob(pb.GetJobRequest(job_id=world.active))).job
    assert active.state == job_pb2.JOB_STATE_COMPLETED and active.result == b"good"
    assert active.last_error.type == "Flaky", "the stale Fail must not overwrite the error"
    done = (await stub.GetJob(pb.GetJobRequest(job_id=world.completed))).job
    assert done.result == b"r"
    retried = (await stub.GetJob(pb.GetJobRequest(job_id=world.ready))).job
    assert retried.state == job_pb2.JOB_STATE_SCHEDULED and retried.last_error.type == "E"

    after = await snapshot(redis, prefix)
    changed = changed_keys(before, after)
    assert job_key(prefix, world.completed) not in changed
    assert not any(b":999999" in k or b"{other}" in k for k in after)
    # The good items also append to the queue's event stream and throughput counters.
    stats = queue_key(prefix, "stats:")
    assert {k for k in changed if not k.startswith(stats)} <= {
        job_key(prefix, world.active),
        job_key(prefix, world.ready),
        events_key(prefix, world.active),
        *(queue_key(prefix, n) for n in ("active", "completed", "scheduled", "qevents")),
    }


# -- the reason for size limits on fields other than payload and result ---------------------

NON_PAYLOAD_SIZE_CASES = {
    "header_value": lambda stub, w: stub.Enqueue(
        pb.EnqueueRequest(queue=Q, job=spec(headers={"h": "v" * 4097}))
    ),
    "idempotency_key": lambda stub, w: stub.Enqueue(
        pb.EnqueueRequest(queue=Q, job=spec(idempotency_key="i" * 257))
    ),
    "lease_token": lambda stub, w: stub.Complete(
        pb.CompleteRequest(job_id=w.active, lease_token="t" * 129)
    ),
}


@pytest.mark.parametrize("make", NON_PAYLOAD_SIZE_CASES.values(), ids=NON_PAYLOAD_SIZE_CASES.keys())
async def test_oversized_non_payload_field_reason(
    stub: rpc.BrokerServiceStub,
    world: World,
    make: Callable[[rpc.BrokerServiceStub, World], Awaitable[Any]],
) -> None:
    err = await call_error(make(stub, world))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == INVALID
