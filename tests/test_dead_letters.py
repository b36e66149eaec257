"""Dead-letter triage end to end over real gRPC on a real Valkey: ListDeadLetterGroups
(fingerprint groups: acceptance 4), RedriveDeadLetters (rate-limited, dry run, limit,
filters, cancelling) and PurgeDeadLetters (by group, age, both, all), with their
bad-input cases (invariant 7: nothing written)."""

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import test_bad_input as bad_input
from helpers import millis, ms
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.domain.fingerprint import fingerprint
from jobwire_broker.server import BrokerApp
from jobwire_broker.store.batches import JOBS_PER_CALL
from redis.asyncio import Redis
from test_admin_jobs import enqueue, fail_leased, fatal, key, queue_events, seq, specs
from test_bad_input import INVALID, World, assert_unchanged, drain, rejected, snapshot

pytestmark = pytest.mark.redis_matrix

Q = "q"
DEAD = job_pb2.JOB_STATE_DEAD
BAD = grpc.StatusCode.INVALID_ARGUMENT

world = bad_input.world  # the fixture: a queue with a job in every state


@pytest.fixture
async def admin(broker: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        yield arpc.AdminServiceStub(channel)


async def die(
    stub: rpc.BrokerServiceStub, error_type: str, messages: list[str], **spec: Any
) -> list[str]:
    """One dead job per message, each failed in its own call (so each has its own time)."""
    await enqueue(stub, specs(len(messages), **spec))
    ids = []
    for message in messages:
        error = job_pb2.JobError(type=error_type, message=message, non_retryable=True)
        ids += await fail_leased(stub, 1, lambda i, e=error: e)
        await asyncio.sleep(0.002)
    return ids


async def groups(admin: arpc.AdminServiceStub, page_size: int = 0) -> list[apb.DeadLetterGroup]:
    found: list[apb.DeadLetterGroup] = []
    request = apb.ListDeadLetterGroupsRequest(queue=Q, page_size=page_size)
    while True:
        page = await admin.ListDeadLetterGroups(request)
        found += page.groups
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def redrive(
    admin: arpc.AdminServiceStub, **kwargs: Any
) -> list[apb.RedriveDeadLettersResponse]:
    call = admin.RedriveDeadLetters(apb.RedriveDeadLettersRequest(queue=Q, **kwargs))
    return [message async for message in call]


# -- groups: acceptance 4 ----------------------------------------------------------------

VARIANTS = {
    "TimeoutError": (
        "upstream 10.0.0.7:443 timed out after 3000 ms",
        "upstream 192.168.1.20:8443 timed out after 12 ms",
        "upstream [2001:db8::17]:443 timed out after 999999 ms",
    ),
    "KeyError": ("missing key 'user_42'", 'missing key "order-99"', "missing key 'x'"),
    "ValueError": (
        "invalid wallet 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU for tx 0x5f3a9c2e",
        "invalid wallet 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2 for tx 0xdeadbeef01",
        "invalid wallet 9WzDXwBbmkg8ZTbNMqUxvQRAyrZzDsGYdLVL9zYtAWWM for tx 0x1",
    ),
    "HTTPError": (
        "request 550e8400-e29b-41d4-a716-446655440000 to https://api.example.com/v1/a failed",
        "request 6ba7b810-9dad-11d1-80b4-00c04fd430c8 to https://pay.example.org/x?id=7 failed",
    ),
    "DBError": (
        "row ord8f3k2j of shard 3 locked by 3f2a9c1e0b7d",
        "row a9k2mm1xq of shard 12 locked by ffee01",
    ),
}
TEMPLATES = {
    "TimeoutError": "upstream <ip> timed out after <n> ms",
    "KeyError": "missing key <str>",
    "ValueError": "invalid wallet <addr> for tx <hex>",
    "HTTPError": "request <uuid> to <addr> failed",
    "DBError": "row <hex> of shard <n> locked by <hex>",
}


async def test_errors_that_differ_only_in_their_variable_parts_share_a_group(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    died: dict[str, list[str]] = {}
    for error_type, messages in VARIANTS.items():
        died[error_type] = await die(stub, error_type, list(messages))
    found = await groups(admin)
    assert [g.error_type for g in found] == list(VARIANTS)[::-1]  # most recent first
    for g in found:
        ids = died[g.error_type]
        assert g.message_template == TEMPLATES[g.error_type]
        assert g.fingerprint == fingerprint(g.error_type, VARIANTS[g.error_type][0])[0]
        assert g.count == len(ids)
        assert (g.sample_job_id, g.sample_message) == (ids[-1], VARIANTS[g.error_type][-1])
        first = (await stub.GetJob(pb.GetJobRequest(job_id=ids[0]))).job
        last = (await stub.GetJob(pb.GetJobRequest(job_id=ids[-1]))).job
        assert g.first_seen_time == first.finish_time and g.last_seen_time == last.finish_time
        assert millis(g.first_seen_time) < millis(g.last_seen_time)


async def test_distinct_error_types_never_share_a_group(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub
) -> None:
    types = ["TimeoutError", "timeouterror", "TimeoutError2", "LEASE_EXPIRED", "E"]
    for error_type in types:
        await die(stub, error_type, ["connection to 10.0.0.1 refused"] * 2)
    found = await groups(admin)
    assert sorted(g.error_type for g in found) == sorted(types)
    assert len({g.fingerprint for g in found}) == len(types)
    assert {g.message_template for g in found} == {"connection to <ip> refused"}
    assert all(g.count == 2 for g in found)


async def test_groups_page_most_recent_first_and_follow_their_jobs(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    for i in range(25):
        await die(stub, f"Error{i:02}", [f"failed with code {i}"])
    paged = await groups(admin, page_size=10)
    assert [g.error_type for g in paged] == [f"Error{i:02}" for i in range(24, -1, -1)]
    first = await admin.ListDeadLetterGroups(apb.ListDeadLetterGroupsRequest(queue=Q))
    assert len(first.groups) == 25 and not first.next_page_token  # page_size 0 means 100
    # A group whose jobs all leave the dead set is gone; one that gets a new job moves up.
    oldest = paged[-1]
    await admin.RetryJobs(apb.RetryJobsRequest(queue=Q, job_ids=[oldest.sample_job_id]))
    await die(stub, "Error10", ["failed with code 77"])
    again = await groups(admin, page_size=7)
    assert [g.error_type for g in again][:2] == ["Error10", "Error24"]
    assert oldest.fingerprint not in {g.fingerprint for g in again} and len(again) == 24
    assert not await redis.exists(key(prefix, f"dlgmeta:{oldest.fingerprint}"))


# -- redrive -----------------------------------------------------------------------------


async def test_a_redrive_at_500_jobs_per_second_takes_about_4_seconds(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    """Acceptance 4: 2,000 dead jobs of one group at 500 jobs/s: 40 batches of 50, one
    every 0.1 s. Another group's dead jobs stay dead."""
    await enqueue(stub, specs(2_000, max_attempts=1))
    redriven_ids = await fail_leased(
        stub, 2_000, lambda i: job_pb2.JobError(type="Timeout", message=f"timed out after {i} ms")
    )
    await enqueue(stub, specs(100))
    await fail_leased(stub, 100, fatal("Other"))
    group = fingerprint("Timeout", "timed out after 1 ms")[0]

    start = time.monotonic()
    messages = await redrive(admin, fingerprint=group, rate=500)
    took = time.monotonic() - start
    assert 3.4 <= took <= 5.5, f"took {took:.2f} s"
    assert messages[0] == apb.RedriveDeadLettersResponse(matched=2_000)
    assert messages[-1] == apb.RedriveDeadLettersResponse(matched=2_000, redriven=2_000, done=True)
    progress = [m.redriven for m in messages[1:-1]]
    assert progress == sorted(progress) and len(progress) == 40 and progress[0] == 50
    assert await redis.zcard(key(prefix, "ready")) == 2_000
    assert await redis.zcard(key(prefix, "dead")) == 100
    assert await redis.zscore(key(prefix, "dlgroups"), group) is None
    ready = [e[b"job"] for e in await queue_events(redis, prefix) if e[b"kind"] == b"ready"]
    assert sorted(ready) == sorted(seq(j).encode() for j in redriven_ids)


async def test_a_dry_run_counts_and_changes_nothing(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_200, headers={"tenant": "a"}))
    await enqueue(stub, specs(300, headers={"tenant": "b"}))
    await fail_leased(stub, 1_500, fatal())
    group = fingerprint("Fatal", "boom")[0]
    before = await snapshot(redis, prefix)
    cases: list[tuple[dict[str, Any], int]] = [
        ({}, 1_500),
        ({"fingerprint": group}, 1_500),
        ({"fingerprint": group, "limit": 100}, 100),
        ({"filter": apb.JobFilter(header_key="tenant", header_value="b")}, 300),
        ({"filter": apb.JobFilter(error_fingerprint=group, header_key="tenant")}, 1_500),
        ({"fingerprint": "0123456789abcdef"}, 0),
        ({"filter": apb.JobFilter(error_type="Fatal"), "rate": 1}, 1_500),
    ]
    for kwargs, matched in cases:
        messages = await redrive(admin, dry_run=True, **kwargs)
        assert messages == [apb.RedriveDeadLettersResponse(matched=matched, done=True)], kwargs
    assert_unchanged(before, await snapshot(redis, prefix))


async def test_redrive_takes_the_oldest_first_up_to_its_limit_and_honours_filters(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_500, headers={"tenant": "a"}))
    await enqueue(stub, specs(500, headers={"tenant": "b"}))
    await fail_leased(stub, 2_000, fatal())
    # The oldest: the dead set's order (finish time, then member among ties).
    oldest = {m.decode() for m in await redis.zrange(key(prefix, "dead"), 0, 1_099)}
    messages = await redrive(admin, limit=1_100)
    assert (messages[0].matched, messages[-1].redriven, messages[-1].done) == (1_100, 1_100, True)
    # Unpaced: batches of JOBS_PER_CALL back to back.
    batches = range(JOBS_PER_CALL, 1_100 + JOBS_PER_CALL, JOBS_PER_CALL)
    assert [m.redriven for m in messages[1:-1]] == [min(n, 1_100) for n in batches]
    ready = {m.decode() for m in await redis.zrange(key(prefix, "ready"), 0, -1)}
    assert ready == oldest
    tenant_b = apb.JobFilter(header_key="tenant", header_value="b")
    messages = await redrive(admin, filter=tenant_b)
    assert messages[-1] == apb.RedriveDeadLettersResponse(matched=500, redriven=500, done=True)
    assert await redis.zcard(key(prefix, "dead")) == 400
    messages = await redrive(admin, fingerprint=fingerprint("Fatal", "boom")[0])
    assert (messages[0].matched, messages[-1].redriven) == (400, 400)
    assert await redis.zcard(key(prefix, "dead")) == 0
    assert await redrive(admin) == [apb.RedriveDeadLettersResponse(done=True)]


async def test_cancelling_a_redrive_stops_it(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_000))
    await fail_leased(stub, 1_000, fatal())
    call = admin.RedriveDeadLetters(apb.RedriveDeadLettersRequest(queue=Q, rate=100))
    seen = []
    async for message in call:
        seen.append(message)
        if len(seen) == 3:  # matched, then two batches of 10
            break
    call.cancel()
    assert [m.redriven for m in seen] == [0, 10, 20]
    await asyncio.sleep(0.3)
    stopped = await redis.zcard(key(prefix, "ready"))
    assert 20 <= stopped <= 40
    await asyncio.sleep(0.5)
    assert await redis.zcard(key(prefix, "ready")) == stopped
    assert await redis.zcard(key(prefix, "dead")) == 1_000 - stopped


async def test_a_redriven_job_that_dies_again_is_not_redriven_twice(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, broker: BrokerApp
) -> None:
    """A redrive ends where the dead set ended when it started: jobs that die during it
    (the ones it sent back included) wait for the next one."""
    await enqueue(stub, specs(300))
    await fail_leased(stub, 300, fatal())
    stop = asyncio.Event()

    async def fail_again() -> None:
        while not stop.is_set():
            await fail_leased(stub, 300, fatal())
            await asyncio.sleep(0.01)

    task = asyncio.create_task(fail_again())
    try:
        messages = await redrive(admin, rate=1_000)
    finally:
        stop.set()
        await task
    assert (messages[0].matched, messages[-1].redriven) == (300, 300)


# -- purge -------------------------------------------------------------------------------


async def test_purge_by_group_age_both_and_all(
    admin: arpc.AdminServiceStub, stub: rpc.BrokerServiceStub, redis: Redis, prefix: str
) -> None:
    await enqueue(stub, specs(1_300))
    old_a = await fail_leased(stub, 1_200, fatal("A"))
    old_b = await fail_leased(stub, 100, fatal("B"))
    # Old and new are 3 s apart; the purges run within 2 s of the new ones dying, even
    # on a slow machine.
    await asyncio.sleep(3.0)
    await enqueue(stub, specs(70))
    new_a = await fail_leased(stub, 50, fatal("A"))
    new_b = await fail_leased(stub, 20, fatal("B"))
    group_a, group_b = fingerprint("A", "boom")[0], fingerprint("B", "boom")[0]
    two_seconds = ms(2_000)

    async def purge(dry_run: bool = False, **kwargs: Any) -> int:
        request = apb.PurgeDeadLettersRequest(queue=Q, dry_run=dry_run, **kwargs)
        return (await admin.PurgeDeadLetters(request)).purged

    before = await snapshot(redis, prefix)
    assert await purge(True, all=True) == 1_370
    assert await purge(True, fingerprint=group_a) == 1_250
    assert await purge(True, older_than=two_seconds) == 1_300
    assert await purge(True, fingerprint=group_b, older_than=two_seconds) == 100
    assert_unchanged(before, await snapshot(redis, prefix))

    assert await purge(fingerprint=group_b, older_than=two_seconds) == 100
    assert await purge(older_than=two_seconds) == 1_200
    remaining = sorted(m.decode() for m in await redis.zrange(key(prefix, "dead"), 0, -1))
    assert remaining == sorted(seq(j) for j in new_a + new_b)
    for job_id in old_a[:3] + old_b[:3]:
        assert not await redis.exists(key(prefix, f"job:{seq(job_id)}"))
    assert await redis.zcard(key(prefix, f"dlg:{group_a}")) == 50
    assert await purge(fingerprint=group_a) == 50
    assert [g.error_type for g in await groups(admin)] == ["B"]
    assert await purge(all=True) == 20
    assert await redis.zcard(key(prefix, "dead")) == 0
    assert await redis.zcard(key(prefix, "dlgroups")) == 0
    removed = [e for e in await queue_events(redis, prefix) if e[b"kind"] == b"removed"]
    assert len(removed) == 1_370 and {e[b"state"] for e in removed} == {b"dead"}
    assert await purge(all=True) == 0


# -- bad input ---------------------------------------------------------------------------

GROUP_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_queue", {"queue": ""}, ["queue"]),
    ("page_size_negative", {"page_size": -5}, ["page_size"]),
    ("page_size_1001", {"page_size": 1001}, ["page_size"]),
    ("token_garbage", {"page_token": "%%%"}, ["page_token"]),
]

REDRIVE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_queue", {"queue": ""}, ["queue"]),
    ("bad_fingerprint", {"fingerprint": "not-a-print"}, ["fingerprint"]),
    ("upper_case_fingerprint", {"fingerprint": "0123456789ABCDEF"}, ["fingerprint"]),
    ("rate_negative", {"rate": -1}, ["rate"]),
    ("rate_over_100000", {"rate": 100_001}, ["rate"]),
    ("rate_nan", {"rate": math.nan}, ["rate"]),
    ("rate_inf", {"rate": math.inf}, ["rate"]),
    ("limit_negative", {"limit": -1}, ["limit"]),
    (
        "filter_header_value_alone",
        {"filter": apb.JobFilter(header_value="v")},
        ["filter.header_value"],
    ),
    (
        "filter_bad_fingerprint",
        {"filter": apb.JobFilter(error_fingerprint="x")},
        ["filter.error_fingerprint"],
    ),
    ("two_at_once", {"rate": -1, "limit": -1}, ["rate", "limit"]),
]

PURGE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no_queue", {"queue": "", "all": True}, ["queue"]),
    ("nothing_chosen", {}, ["all"]),
    ("nothing_chosen_dry_run", {"dry_run": True}, ["all"]),
    ("all_with_fingerprint", {"all": True, "fingerprint": "0123456789abcdef"}, ["all"]),
    ("all_with_older_than", {"all": True, "older_than": ms(1_000)}, ["all"]),
    ("bad_fingerprint", {"fingerprint": "xyz"}, ["fingerprint"]),
    ("older_than_negative", {"older_than": ms(-1_000)}, ["older_than"]),
    ("older_than_over_100_years", {"older_than": ms(101 * 365 * 86_400_000)}, ["older_than"]),
]


@pytest.mark.parametrize(("case", "fields", "bad"), GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
async def test_list_dead_letter_groups_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.ListDeadLetterGroupsRequest(**{"queue": Q, **fields})
    await rejected(redis, prefix, lambda: admin.ListDeadLetterGroups(request), BAD, INVALID, bad)


async def test_a_list_jobs_token_is_no_groups_token(
    admin: arpc.AdminServiceStub,
    world: World,
    stub: rpc.BrokerServiceStub,
    redis: Redis,
    prefix: str,
) -> None:
    await enqueue(stub, specs(3))
    await fail_leased(stub, 3, fatal())
    page = await admin.ListJobs(apb.ListJobsRequest(queue=Q, state=DEAD, page_size=1))
    assert page.next_page_token
    request = apb.ListDeadLetterGroupsRequest(queue=Q, page_token=page.next_page_token)
    await rejected(
        redis, prefix, lambda: admin.ListDeadLetterGroups(request), BAD, INVALID, ["page_token"]
    )


@pytest.mark.parametrize(
    ("case", "fields", "bad"), REDRIVE_CASES, ids=[c[0] for c in REDRIVE_CASES]
)
async def test_redrive_dead_letters_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.RedriveDeadLettersRequest(**{"queue": Q, **fields})
    await rejected(
        redis, prefix, lambda: drain(admin.RedriveDeadLetters(request)), BAD, INVALID, bad
    )


@pytest.mark.parametrize(("case", "fields", "bad"), PURGE_CASES, ids=[c[0] for c in PURGE_CASES])
async def test_purge_dead_letters_rejects(
    admin: arpc.AdminServiceStub,
    world: World,
    redis: Redis,
    prefix: str,
    case: str,
    fields: dict[str, Any],
    bad: list[str],
) -> None:
    request = apb.PurgeDeadLettersRequest(**{"queue": Q, **fields})
    await rejected(redis, prefix, lambda: admin.PurgeDeadLetters(request), BAD, INVALID, bad)


async def test_unknown_queues_are_not_found_for_every_dead_letter_rpc(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    calls = [
        lambda: admin.ListDeadLetterGroups(apb.ListDeadLetterGroupsRequest(queue="ghost")),
        lambda: drain(admin.RedriveDeadLetters(apb.RedriveDeadLettersRequest(queue="ghost"))),
        lambda: drain(
            admin.RedriveDeadLetters(apb.RedriveDeadLettersRequest(queue="ghost", dry_run=True))
        ),
        lambda: admin.PurgeDeadLetters(apb.PurgeDeadLettersRequest(queue="ghost", all=True)),
    ]
    for call in calls:
        err = await rejected(redis, prefix, call, grpc.StatusCode.NOT_FOUND, "QUEUE_NOT_FOUND")
        assert "ghost" in err.message


async def test_listing_groups_and_dry_runs_write_nothing(
    admin: arpc.AdminServiceStub, world: World, redis: Redis, prefix: str
) -> None:
    before = await snapshot(redis, prefix)
    (found,) = await groups(admin)
    assert (found.error_type, found.count, found.sample_job_id) == ("Fatal", 1, world.dead)
    assert await redrive(admin, dry_run=True) == [
        apb.RedriveDeadLettersResponse(matched=1, done=True)
    ]
    purge = apb.PurgeDeadLettersRequest(queue=Q, all=True, dry_run=True)
    assert (await admin.PurgeDeadLetters(purge)).purged == 1
    assert_unchanged(before, await snapshot(redis, prefix))
