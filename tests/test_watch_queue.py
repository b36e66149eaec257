"""WatchQueue (issue 10, acceptance 5): every event of a queue, in order per job, and a
client that reconnects with its last event id misses none. Also: new events only by
default, `0` for the oldest kept, `gap` once events were trimmed, the stream's end at
shutdown, and bad input (acceptance 7) writing nothing. Real broker, real Valkey."""

import asyncio
import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from helpers import ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import RedisServer, broker_settings, unique_prefix
from test_bad_input import call_error, drain, rejected

K = apb.QueueEventKind
S = job_pb2.JobState
Call = Any  # grpc.aio.UnaryStreamCall[WatchQueueRequest, WatchQueueResponse]


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


def watch(admin: arpc.AdminServiceStub, queue: str, after: str) -> Call:
    return admin.WatchQueue(apb.WatchQueueRequest(queue=queue, after_event_id=after))


async def read(call: Call, into: list[apb.WatchQueueResponse], until: int) -> None:
    """Appends the call's events to `into` until it holds `until`, then hangs up."""
    async with asyncio.timeout(60):
        async for event in call:
            into.append(event)
            if len(into) >= until:
                break
    call.cancel()


def key(prefix: str, queue: str, name: str) -> str:
    return f"{prefix}:{{{queue}}}:{name}"


def order(event_id: str) -> tuple[int, int]:
    ms_part, seq = event_id.split("-")
    return int(ms_part), int(seq)


# -- acceptance 5: 1,000 jobs through their lives --------------------------------------

LIFE = "life"
JOBS = 1_000
# What each tenth of the jobs goes through, by seq % 10, and the queue events it makes.
PLANS: dict[int, list[int]] = {
    0: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_LEASED, K.QUEUE_EVENT_KIND_COMPLETED],
    1: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_LEASED]
    + [K.QUEUE_EVENT_KIND_PROGRESS] * 2
    + [K.QUEUE_EVENT_KIND_COMPLETED],
    2: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_LEASED]
    + [K.QUEUE_EVENT_KIND_PROGRESS] * 2
    + [K.QUEUE_EVENT_KIND_COMPLETED],
    3: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_LEASED, K.QUEUE_EVENT_KIND_COMPLETED],
    # Fails once, retried at once, completes.
    4: [
        K.QUEUE_EVENT_KIND_ENQUEUED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_FAILED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_COMPLETED,
    ],
    # Fails once, retried after a delay (scheduled, then ready), completes.
    5: [
        K.QUEUE_EVENT_KIND_ENQUEUED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_FAILED,
        K.QUEUE_EVENT_KIND_READY,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_COMPLETED,
    ],
    # Fails non-retryably: dead.
    6: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_LEASED, K.QUEUE_EVENT_KIND_DEAD],
    # Fails twice: max_attempts 2 is exhausted, dead.
    7: [
        K.QUEUE_EVENT_KIND_ENQUEUED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_FAILED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_DEAD,
    ],
    # Cancelled while active; its worker then fails it, which cancels it.
    8: [
        K.QUEUE_EVENT_KIND_ENQUEUED,
        K.QUEUE_EVENT_KIND_LEASED,
        K.QUEUE_EVENT_KIND_CANCEL_REQUESTED,
        K.QUEUE_EVENT_KIND_CANCELLED,
    ],
    # Cancelled while ready.
    9: [K.QUEUE_EVENT_KIND_ENQUEUED, K.QUEUE_EVENT_KIND_CANCELLED],
}
TOTAL_EVENTS = sum(len(PLANS[seq % 10]) for seq in range(1, JOBS + 1))


def fail(job_id: str, token: str, kind: str, *, delay_ms: int = 0, final: bool = False) -> Any:
    request = pb.FailRequest(
        job_id=job_id,
        lease_token=token,
        error=job_pb2.JobError(type=kind, message=f"{kind} on {job_id}", non_retryable=final),
    )
    if not final:
        request.retry_delay.CopyFrom(ms(delay_ms))
    return pb.Settlement(fail=request)


class Workload:
    """Drives the jobs of PLANS through a real broker, in rounds of leases of 100;
    after `pause_after` rounds it waits for `resume` (set by the reconnecting watcher)."""

    def __init__(self, stub: rpc.BrokerServiceStub, pause_after: int) -> None:
        self.stub = stub
        self.pause_after = pause_after
        self.paused = asyncio.Event()
        self.resume = asyncio.Event()
        self.settled: set[int] = set()

    async def run(self) -> None:
        to_finish = {seq for seq in range(1, JOBS + 1) if seq % 10 != 9}
        rounds = 0
        while not to_finish <= self.settled:
            reply = await self.stub.Lease(
                pb.LeaseRequest(queue=LIFE, max_jobs=100, wait=ms(500), worker_id="life-w")
            )
            await self.round(list(reply.jobs))
            rounds += 1
            if rounds == self.pause_after:
                self.paused.set()
                await asyncio.wait_for(self.resume.wait(), 30)

    async def round(self, leased: list[pb.LeasedJob]) -> None:
        beats, settlements = [], []
        for lj in leased:
            seq = int(lj.job.id.rsplit(":", 1)[1])
            if seq % 10 in (1, 2):
                for percent in (50.0, 100.0):
                    progress = job_pb2.Progress(percent=percent, message=f"{seq}@{percent:g}")
                    beats.append(
                        pb.HeartbeatRequest(
                            job_id=lj.job.id, lease_token=lj.lease_token, progress=progress
                        )
                    )
            if seq % 10 == 8:
                await self.stub.CancelJob(pb.CancelJobRequest(job_id=lj.job.id))
            settlement, final = settle(seq, lj)
            settlements.append(settlement)
            if final:
                self.settled.add(seq)
        if beats:
            # Two heartbeats of one job in one batch would be one script call, in order;
            # send them in two batches to be plain about the order.
            for half in (beats[0::2], beats[1::2]):
                await self.stub.HeartbeatBatch(pb.HeartbeatBatchRequest(heartbeats=half))
        if settlements:
            reply = await self.stub.SettleBatch(pb.SettleBatchRequest(settlements=settlements))
            assert all(r.status.code == 0 for r in reply.results), reply


def settle(seq: int, lj: pb.LeasedJob) -> tuple[pb.Settlement, bool]:
    """How the plan of job `seq` ends this attempt, and whether that ends the job."""
    job_id, token, plan = lj.job.id, lj.lease_token, seq % 10
    if plan == 8:
        return fail(job_id, token, "Stopped"), True  # cancel requested: Fail cancels it
    if plan == 6:
        return fail(job_id, token, "Fatal", final=True), True
    if plan in (4, 5, 7) and lj.attempt == 1:
        return fail(job_id, token, "Flaky", delay_ms=30 if plan == 5 else 0), False
    if plan == 7:
        return fail(job_id, token, "Flaky"), True  # its last attempt: dead
    complete = pb.CompleteRequest(job_id=job_id, lease_token=token)
    return pb.Settlement(complete=complete), True


def by_job(events: list[apb.WatchQueueResponse]) -> dict[str, list[apb.WatchQueueResponse]]:
    out: dict[str, list[apb.WatchQueueResponse]] = defaultdict(list)
    for event in events:
        out[event.job_id].append(event)
    return out


def check_life(seq: int, events: list[apb.WatchQueueResponse]) -> None:
    """One job's events: the plan's kinds in order, with the right states and fields."""
    plan = seq % 10
    assert [e.kind for e in events] == PLANS[plan], (seq, events)
    attempt = 0
    for e in events:
        if e.kind == K.QUEUE_EVENT_KIND_LEASED:
            attempt += 1
            assert e.state == S.JOB_STATE_ACTIVE
        assert e.attempt == attempt, (seq, e)
    first, last = events[0], events[-1]
    assert first.state == S.JOB_STATE_READY and first.attempt == 0
    expected_end = {
        K.QUEUE_EVENT_KIND_COMPLETED: S.JOB_STATE_COMPLETED,
        K.QUEUE_EVENT_KIND_DEAD: S.JOB_STATE_DEAD,
        K.QUEUE_EVENT_KIND_CANCELLED: S.JOB_STATE_CANCELLED,
    }
    assert last.state == expected_end[last.kind], (seq, last)
    for e in events:
        if e.kind == K.QUEUE_EVENT_KIND_PROGRESS:
            assert e.progress.message.startswith(f"{seq}@"), e
        else:
            assert not e.HasField("progress"), e
        if e.kind in (K.QUEUE_EVENT_KIND_FAILED, K.QUEUE_EVENT_KIND_DEAD) or (
            plan == 8 and e.kind == K.QUEUE_EVENT_KIND_CANCELLED  # the Fail that ended it
        ):
            assert e.error.type in ("Flaky", "Fatal", "Stopped"), e
            assert e.error.message == f"{e.error.type} on {LIFE}:{seq}"
            assert e.error.non_retryable == (e.error.type == "Fatal")
        else:
            assert not e.HasField("error"), e
    failed = [e for e in events if e.kind == K.QUEUE_EVENT_KIND_FAILED]
    if failed:
        assert failed[0].state == (S.JOB_STATE_SCHEDULED if plan == 5 else S.JOB_STATE_READY)
    progress = [e.progress.percent for e in events if e.kind == K.QUEUE_EVENT_KIND_PROGRESS]
    assert progress == ([50.0, 100.0] if plan in (1, 2) else [])


async def test_every_event_of_1000_jobs_in_order_and_a_reconnect_misses_none(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    jobs = [job_pb2.JobSpec(payload=b"%d" % i, max_attempts=2) for i in range(JOBS)]
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=LIFE, jobs=jobs))
    for seq in range(9, JOBS + 1, 10):
        await stub.CancelJob(pb.CancelJobRequest(job_id=f"{LIFE}:{seq}"))

    workload = Workload(stub, pause_after=3)
    steady: list[apb.WatchQueueResponse] = []
    steady_task = asyncio.create_task(read(watch(admin, LIFE, "0"), steady, TOTAL_EVENTS))
    work = asyncio.create_task(workload.run())

    # The second watcher hangs up midway, while the workload is paused after three
    # rounds (so events keep coming after it left), and comes back with its last id.
    first_part: list[apb.WatchQueueResponse] = []
    await read(watch(admin, LIFE, "0"), first_part, 1_150)
    await asyncio.wait_for(workload.paused.wait(), 30)
    assert not work.done()
    workload.resume.set()
    await asyncio.sleep(0.2)  # events go by while it is away
    rest: list[apb.WatchQueueResponse] = []
    resumed = watch(admin, LIFE, first_part[-1].event_id)
    await read(resumed, rest, TOTAL_EVENTS - len(first_part))

    await asyncio.wait_for(work, 60)
    await asyncio.wait_for(steady_task, 60)
    assert len(steady) == TOTAL_EVENTS == 4_100

    ids = [e.event_id for e in steady]
    assert [order(i) for i in ids] == sorted({order(i) for i in ids}), "ids must increase"
    assert not any(e.gap for e in steady)
    lives = by_job(steady)
    assert sorted(lives) == sorted(f"{LIFE}:{seq}" for seq in range(1, JOBS + 1))
    for job_id, events in lives.items():
        check_life(int(job_id.rsplit(":", 1)[1]), events)

    # The watcher that reconnected saw exactly what the steady one saw.
    reconnected = first_part + rest
    assert not any(e.gap for e in reconnected)
    assert [e.SerializeToString() for e in reconnected] == [e.SerializeToString() for e in steady]
    assert len(rest) > 1_000, "most of the events came after the reconnect"


# -- where a watch starts ---------------------------------------------------------------


async def test_no_after_event_id_means_new_events_only(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    q = "fresh"
    for _ in range(3):
        await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"old")))
    got: list[apb.WatchQueueResponse] = []
    call = watch(admin, q, "")
    reading = asyncio.create_task(read(call, got, 1))
    # The stream starts at the newest event when the call begins: keep making new ones
    # until the watcher sees one.
    async with asyncio.timeout(10):
        while not reading.done():
            await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"new")))
            await asyncio.sleep(0.05)
    (first,) = got
    assert first.kind == K.QUEUE_EVENT_KIND_ENQUEUED
    assert int(first.job_id.rsplit(":", 1)[1]) > 3, "older events are not replayed"
    assert not first.gap


async def test_a_waiting_watcher_is_woken_by_the_next_event(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub
) -> None:
    """Scripts publish on the queue's events channel, so a watcher that has read all
    there is gets the next event at once, not at its next recheck (RECHECK_S, 2 s)."""
    q = "woken"
    await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"x")))
    call = watch(admin, q, "0")
    stream = aiter(call)
    await anext(stream)
    for _ in range(3):
        next_event = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)  # the watcher is asleep by now
        assert not next_event.done()
        start = time.monotonic()
        await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"x")))
        event = await asyncio.wait_for(next_event, 5)
        assert time.monotonic() - start < 0.5
        assert event.kind == K.QUEUE_EVENT_KIND_ENQUEUED
    call.cancel()


async def test_zero_replays_the_oldest_kept_and_an_id_resumes_after_it(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    q = "replay"
    jobs = [job_pb2.JobSpec(payload=b"x")] * 5
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=q, jobs=jobs))
    await asyncio.sleep(0.01)
    await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"later")))
    everything: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, "0"), everything, 6)
    assert [e.job_id for e in everything] == [f"{q}:{n}" for n in range(1, 7)]
    stored = await redis.xrange(key(prefix, q, "qevents"))
    assert [e.event_id for e in everything] == [i.decode() for i, _ in stored]
    # Each event's time is its id's.
    assert all(e.time.ToMilliseconds() == order(e.event_id)[0] for e in everything)

    after_second: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, everything[1].event_id), after_second, 4)
    assert after_second == everything[2:]
    # An id between two kept entries (not one handed out) resumes after it, no gap.
    between = f"{order(everything[4].event_id)[0]}-999"
    assert order(everything[4].event_id) < order(between) < order(everything[5].event_id)
    tail: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, between), tail, 1)
    assert tail == everything[5:]


async def test_queue_wide_and_unknown_kinds_map_without_a_job(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    """PauseQueue/ResumeQueue write events with an empty job; a kind this broker does
    not know yet reads as UNSPECIFIED rather than breaking the stream."""
    q = "wide"
    await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"x")))
    stream = key(prefix, q, "qevents")
    for kind in ("paused", "resumed", "from_the_future"):
        await redis.xadd(stream, {"kind": kind, "job": "", "state": "", "attempt": "0"})
    got: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, "0"), got, 4)
    assert [e.kind for e in got] == [
        K.QUEUE_EVENT_KIND_ENQUEUED,
        K.QUEUE_EVENT_KIND_PAUSED,
        K.QUEUE_EVENT_KIND_RESUMED,
        K.QUEUE_EVENT_KIND_UNSPECIFIED,
    ]
    for e in got[1:]:
        assert e.job_id == "" and e.state == S.JOB_STATE_UNSPECIFIED and e.attempt == 0


# -- retention and gaps -------------------------------------------------------------------


async def test_gap_is_set_once_when_resuming_from_a_trimmed_event(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    q = "short"
    await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"first")))
    # As UpdateQueue(event_history=10) stores it.
    await redis.hset(key(prefix, q, "settings"), "event_history", "10")
    early: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, "0"), early, 1)
    jobs = [job_pb2.JobSpec(payload=b"x")] * 1_000
    await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=q, jobs=jobs))

    stream = key(prefix, q, "qevents")
    kept = await redis.xlen(stream)
    assert 10 <= kept < 300, "trimmed to about event_history, in whole blocks"
    ((first_kept, _),) = await redis.xrange(stream, count=1)

    resumed: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, early[0].event_id), resumed, kept)
    assert resumed[0].gap and resumed[0].event_id == first_kept.decode()
    assert not any(e.gap for e in resumed[1:])
    assert resumed[-1].job_id == f"{q}:1001"

    # From an event still kept, or from the oldest kept ("0"): nothing missed.
    from_kept: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, resumed[0].event_id), from_kept, kept - 1)
    assert from_kept == [as_another_watcher_sees_it(e) for e in resumed[1:]]
    from_zero: list[apb.WatchQueueResponse] = []
    await read(watch(admin, q, "0"), from_zero, kept)
    assert not any(e.gap for e in from_zero)
    assert from_zero[0].event_id == first_kept.decode()


def as_another_watcher_sees_it(e: apb.WatchQueueResponse) -> apb.WatchQueueResponse:
    """The same event as another watcher receives it (gap is per watcher)."""
    copy = apb.WatchQueueResponse()
    copy.CopyFrom(e)
    copy.gap = False
    return copy


async def test_a_watcher_that_falls_behind_the_trimming_gets_one_gap(
    stub: rpc.BrokerServiceStub, admin: arpc.AdminServiceStub, redis: Redis, prefix: str
) -> None:
    q = "lagging"
    await stub.Enqueue(pb.EnqueueRequest(queue=q, job=job_pb2.JobSpec(payload=b"first")))
    await redis.hset(key(prefix, q, "settings"), "event_history", "10")
    call = watch(admin, q, "0")
    stream = aiter(call)
    first = await anext(stream)
    assert first.job_id == f"{q}:1"
    # While this watcher reads nothing, 3,000 events come and all but ~100 go.
    for _ in range(3):
        jobs = [job_pb2.JobSpec(payload=b"x")] * 1_000
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=q, jobs=jobs))
    got = [first]
    async with asyncio.timeout(30):
        while got[-1].job_id != f"{q}:3001":
            got.append(await anext(stream))
    call.cancel()
    assert 1 < len(got) < 3_001, "events were trimmed before the watcher read them"
    # Where events are missing (and only there) the next event says so.
    seqs = [int(e.job_id.rsplit(":", 1)[1]) for e in got]
    assert not got[0].gap
    assert [e.gap for e in got[1:]] == [b != a + 1 for a, b in itertools.pairwise(seqs)]
    assert any(e.gap for e in got)


# -- shutdown ---------------------------------------------------------------------------


async def test_the_stream_ends_unavailable_when_the_broker_shuts_down(
    redis_server: RedisServer,
) -> None:
    app = BrokerApp(broker_settings(redis_server.url, unique_prefix()))
    await app.start()
    stopping = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = rpc.BrokerServiceStub(channel)
            admin = arpc.AdminServiceStub(channel)
            await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))
            call = watch(admin, "q", "0")
            stream = aiter(call)
            assert (await anext(stream)).kind == K.QUEUE_EVENT_KIND_ENQUEUED
            stopping = asyncio.create_task(app.stop(grace_s=2.0))
            err = await call_error(anext(stream))
    finally:
        await (stopping or app.stop())
    assert err.code == grpc.StatusCode.UNAVAILABLE
    assert err.reason == "SHUTTING_DOWN" and err.retry_info


# -- bad input (acceptance 7) -----------------------------------------------------------


@pytest.fixture
async def seeded(stub: rpc.BrokerServiceStub) -> None:
    await stub.Enqueue(pb.EnqueueRequest(queue="q", job=job_pb2.JobSpec(payload=b"x")))


@dataclasses.dataclass(frozen=True)
class BadWatch:
    id: str
    queue: str
    after: str
    fields: tuple[str, ...]


BAD_WATCHES = [
    BadWatch("queue_empty", "", "", ("queue",)),
    BadWatch("queue_bad_char", "a b", "", ("queue",)),
    BadWatch("queue_129_chars", "q" * 129, "", ("queue",)),
    BadWatch("queue_leading_dash", "-q", "", ("queue",)),
    *(
        BadWatch(f"after_{name}", "q", after, ("after_event_id",))
        for name, after in [
            ("garbage", "garbage"),
            ("ms_only", "123"),
            ("trailing_dash", "1-"),
            ("negative", "-1"),
            ("three_parts", "1-2-3"),
            ("plus", "+"),
            ("dollar", "$"),
            ("exclusive_marker", "(1-0"),
            ("ms_over_uint64", f"{2**64}-0"),
            ("seq_over_uint64", f"1-{2**64}"),
            ("spaces", " 1-0"),
            ("zero_zero_padded", "00"),
        ]
    ),
    BadWatch("both", "", "x", ("queue", "after_event_id")),
]


@pytest.mark.parametrize("case", BAD_WATCHES, ids=lambda c: c.id)
async def test_watch_queue_rejects_bad_input(
    admin: arpc.AdminServiceStub, redis: Redis, prefix: str, seeded: None, case: BadWatch
) -> None:
    await rejected(
        redis,
        prefix,
        lambda: drain(watch(admin, case.queue, case.after)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        list(case.fields),
    )


@pytest.mark.parametrize("after", ["", "0", "1-0"])
async def test_watch_queue_of_an_unknown_queue_is_not_found(
    admin: arpc.AdminServiceStub, redis: Redis, prefix: str, seeded: None, after: str
) -> None:
    err = await rejected(
        redis,
        prefix,
        lambda: drain(watch(admin, "nope", after)),
        grpc.StatusCode.NOT_FOUND,
        "QUEUE_NOT_FOUND",
    )
    assert "nope" in err.message
