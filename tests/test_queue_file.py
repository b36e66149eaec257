"""The queue settings file: parsed strictly, applied by `jobwire serve --queues FILE`
before the broker serves (and once Redis is back if it was down), declarative and
idempotent. `jobwire queues apply FILE` is in test_cli_admin.py."""

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from helpers import enqueue
from jobwire._queue_file import QueueFileError, parse_duration, requests_from_toml
from jobwire.v1 import admin_service_pb2 as apb
from jobwire.v1 import admin_service_pb2_grpc as arpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from redis.asyncio import Redis
from support import (
    ROOT,
    BrokerProcess,
    RedisServer,
    broker_settings,
    eventually,
    running_broker,
    stub_for,
)

FILE = """
# Two queues, kept in git.
[queues.emails]
max_attempts = 5
lease_duration = "45s"
backoff = { kind = "fixed", initial_delay = "2s" }

[queues.reports]
priority = 3
keep_completed = 50
completed_max_age = "1h30m"
execution_timeout = 600
"""
# Every setting of the proto: the broker serves them all.
ALL = [f.name for f in apb.QueueSettings.DESCRIPTOR.fields]


def settings_of(request: apb.UpdateQueueRequest) -> dict[str, object]:
    s = request.settings
    return {f.name: getattr(s, f.name) for f in s.DESCRIPTOR.fields if s.HasField(f.name)}


# -- parsing ------------------------------------------------------------------------


def test_a_file_becomes_one_update_per_queue_with_every_setting_in_the_mask() -> None:
    emails, reports = requests_from_toml(FILE, "queues.toml")
    assert (emails.queue, reports.queue) == ("emails", "reports")
    # Declarative: a setting left out is in the mask and unset, so it goes back to default.
    assert list(emails.update_mask.paths) == ALL == list(reports.update_mask.paths)
    e = settings_of(emails)
    assert sorted(e) == ["backoff", "lease_duration", "max_attempts"]
    assert e["max_attempts"] == 5 and emails.settings.lease_duration.seconds == 45
    backoff = emails.settings.backoff
    assert backoff.kind == job_pb2.BACKOFF_KIND_FIXED
    assert (backoff.initial_delay.seconds, backoff.max_delay.seconds) == (2, 2)
    r = reports.settings
    assert (r.priority, r.keep_completed, r.completed_max_age.seconds) == (3, 50, 5400)
    assert r.execution_timeout.seconds == 600


def test_an_empty_file_declares_nothing() -> None:
    assert requests_from_toml("", "q.toml") == []
    assert requests_from_toml("[queues]\n", "q.toml") == []
    (bare,) = requests_from_toml("[queues.a]\n", "q.toml")
    assert settings_of(bare) == {} and list(bare.update_mask.paths) == ALL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[queues.a]\nmax_attempts = [", "q.toml: not valid TOML"),
        ("[defaults]\nmax_attempts = 1", "q.toml: unknown top-level key 'defaults'"),
        ("queues = 3", "q.toml: queues: must be tables"),
        ("[queues]\na = 3", "q.toml: queues.a: must be a table of settings"),
        ("[queues.a]\nretries = 3", "q.toml: queues.a.retries: unknown setting"),
        ("[queues.a]\nmax_attempts = '3'", "q.toml: queues.a.max_attempts: must be a whole"),
        ("[queues.a]\nmax_attempts = 2.5", "queues.a.max_attempts: must be a whole number"),
        ("[queues.a]\npriority = true", "queues.a.priority: must be a whole number"),
        ("[queues.a]\nlease_duration = '45 sec'", "queues.a.lease_duration: not a duration"),
        ("[queues.a]\nlease_duration = '5m3'", "queues.a.lease_duration: not a duration"),
        ("[queues.a]\nlease_duration = -1", "queues.a.lease_duration: must not be negative"),
        ("[queues.a]\nlease_duration = nan", "queues.a.lease_duration: must be a duration"),
        ("[queues.a]\ndead_max_age = [1]", "queues.a.dead_max_age: must be a duration"),
        ("[queues.a]\nbackoff = 'fixed'", "queues.a.backoff: must be a table"),
        ("[queues.a]\nbackoff = { initial_delay = '1s' }", "queues.a.backoff: kind must be"),
        ("[queues.a]\nbackoff = { kind = 'fixed' }", "backoff: initial_delay is required"),
        (
            "[queues.a]\nbackoff = { kind = 'linear', initial_delay = 1, step = 2 }",
            "queues.a.backoff: unknown key 'step'",
        ),
        (
            "[queues.a]\nbackoff = { kind = 'exponential', initial_delay = 1, jitter = 'x' }",
            "queues.a.backoff: jitter must be a number",
        ),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(QueueFileError) as err:
        requests_from_toml(text, "q.toml")
    assert message in str(err.value)
    assert str(err.value).startswith("q.toml: ")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("45s", 45), ("5m", 300), ("1h30m", 5400), ("7d", 604800), ("2.5", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


# -- jobwire serve --queues FILE ----------------------------------------------------


async def test_serve_applies_the_file_before_serving_and_a_restart_changes_nothing(
    redis_server: RedisServer, redis: Redis, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(FILE)
    args = ("--redis-url", redis_server.url, "--key-prefix", prefix, "--queues", str(path))
    broker = BrokerProcess(*args)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
            admin = arpc.AdminServiceStub(channel)
            emails = (await admin.GetQueue(apb.GetQueueRequest(queue="emails"))).queue
            assert emails.settings.max_attempts == 5
            assert emails.settings.lease_duration.seconds == 45
            async with stub_for(broker.port) as stub:
                job_id = await enqueue(stub, "emails")
                got = await stub.GetJob(pb.GetJobRequest(job_id=job_id))
                assert got.job.spec.max_attempts == 5  # Job.spec shows what was applied
                assert got.job.spec.lease_duration.seconds == 45
        stored = {
            q: await redis.hgetall(f"{prefix}:{{{q}}}:settings") for q in ("emails", "reports")
        }
        assert all(stored.values())
    finally:
        assert broker.terminate() == 0

    again = BrokerProcess(*args)  # the same file on the next deploy
    try:
        for q, before in stored.items():
            assert await redis.hgetall(f"{prefix}:{{{q}}}:settings") == before
    finally:
        assert again.terminate() == 0


@contextlib.asynccontextmanager
async def admin_on(app: BrokerApp) -> AsyncIterator[arpc.AdminServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield arpc.AdminServiceStub(channel)


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobwire_broker", "serve", "--listen", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


async def test_a_line_removed_from_the_file_goes_back_to_the_default(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "queues.toml"
    path.write_text("[queues.sms]\nmax_attempts = 7\npriority = 2\n")
    settings = dataclasses.replace(broker_settings(redis_server.url, prefix), queues_file=path)
    async with running_broker(settings):
        pass
    path.write_text("[queues.sms]\npriority = 2\n")
    async with running_broker(settings) as app, admin_on(app) as admin:
        sms = (await admin.GetQueue(apb.GetQueueRequest(queue="sms"))).queue
    assert not sms.settings.HasField("max_attempts") and sms.settings.priority == 2
    assert sms.effective_settings.max_attempts == 3  # the broker's default again


async def test_queues_not_in_the_file_are_left_alone(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    first = running_broker(broker_settings(redis_server.url, prefix))
    async with first as app, admin_on(app) as admin:
        await admin.UpdateQueue(
            apb.UpdateQueueRequest(queue="other", settings=apb.QueueSettings(priority=9))
        )
    path = tmp_path / "queues.toml"
    path.write_text("[queues.sms]\npriority = 2\n")
    settings = dataclasses.replace(broker_settings(redis_server.url, prefix), queues_file=path)
    async with running_broker(settings) as app, admin_on(app) as admin:
        other = (await admin.GetQueue(apb.GetQueueRequest(queue="other"))).queue
    assert other.settings.priority == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[queues.emails]\nmax_attempts = 0\nlease_duration = '1ms'\n",
            "queues.emails: settings.max_attempts: ",
        ),
        ("[queues.emails]\nlease_duration = '1ms'\n", "settings.lease_duration: "),
        ("[queues.'bad queue']\npriority = 1\n", "queues.bad queue: queue: "),
        ("[queues.emails]\nmax_attempts = 'x'\n", "queues.emails.max_attempts: must be"),
    ],
)
def test_serve_refuses_a_bad_file_before_starting_anything(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(text)
    data = tmp_path / "data"
    run = serve("--redis-url", "", "--data-dir", str(data), "--queues", str(path))
    assert (run.returncode, run.stdout) == (2, ""), run.stderr
    assert run.stderr.startswith(f"jobwire serve: {path}: "), run.stderr
    assert message in run.stderr and run.stderr.count("\n") == 1
    assert not data.exists()  # no embedded Valkey was started


def test_serve_refuses_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "none.toml"
    run = serve("--redis-url", "", "--data-dir", str(tmp_path / "d"), "--queues", str(path))
    assert run.returncode == 2
    assert run.stderr == f"jobwire serve: {path}: cannot read it: No such file or directory\n"


async def test_with_redis_down_at_start_the_file_is_applied_once_it_is_back(
    prefix: str, tmp_path: Path
) -> None:
    later = RedisServer()  # not started yet
    path = tmp_path / "queues.toml"
    path.write_text("[queues.sms]\nmax_attempts = 4\n")
    settings = dataclasses.replace(
        broker_settings(later.url, prefix), queues_file=path, health_interval_s=0.1
    )
    async with running_broker(settings) as app:
        later.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                admin = arpc.AdminServiceStub(channel)

                async def applied() -> bool:
                    try:
                        got = await admin.GetQueue(apb.GetQueueRequest(queue="sms"))
                    except grpc.aio.AioRpcError:
                        return False
                    return got.queue.settings.max_attempts == 4

                await eventually(applied, timeout_s=10)
        finally:
            later.stop()


async def test_two_replicas_started_with_the_file_agree(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(FILE)
    settings = dataclasses.replace(broker_settings(redis_server.url, prefix), queues_file=path)
    async with running_broker(settings) as a, running_broker(settings) as b:
        seen = []
        for app in (a, b):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                admin = arpc.AdminServiceStub(channel)
                seen.append(await admin.ListQueues(apb.ListQueuesRequest()))
    names = [[q.name for q in r.queues] for r in seen]
    assert names[0] == names[1] and {"emails", "reports"} <= set(names[0])
    assert [q.settings for q in seen[0].queues] == [q.settings for q in seen[1].queues]
