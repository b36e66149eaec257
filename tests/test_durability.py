"""What "no acknowledged job is ever lost" needs from the server: the embedded Valkey
fsyncs its AOF before each reply unless told otherwise (`--fsync`, JOBWIRE_FSYNC), and
an external Redis whose settings can lose jobs gets one warning line at startup."""

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest
from jobwire_broker.durability import SETTINGS, problems, read_settings, warn_if_not_durable
from jobwire_broker.embedded import EmbeddedValkey
from redis.asyncio import Redis
from support import ROOT, BrokerProcess, RedisServer, broker_settings, running_broker

# What the embedded server must report, whatever --fsync says.
DURABLE = {"appendonly": "yes", "no-appendfsync-on-rewrite": "no", "maxmemory-policy": "noeviction"}


async def settings_at(url: str) -> dict[str, str]:
    async with Redis.from_url(url, decode_responses=True) as redis:
        config = await read_settings(redis)
    assert config is not None
    return config


def valkey_url_of(broker: BrokerProcess) -> str:
    """The URL of the broker's embedded Valkey: its child process's listening port."""
    (valkey,) = psutil.Process(broker.process.pid).children()
    (port,) = {c.laddr.port for c in valkey.net_connections("tcp") if c.status == "LISTEN"}
    return f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def serving(*args: str, env: dict[str, str] | None = None) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(*args, env=env)
    try:
        yield broker
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.terminate()
        broker.kill()


@pytest.fixture
async def aof_server() -> AsyncIterator[RedisServer]:
    """An external server of our own, with AOF on, that a test may reconfigure."""
    server = RedisServer(aof=True).start()
    yield server
    server.stop()


# -- the embedded Valkey ---------------------------------------------------------------


async def test_embedded_valkey_fsyncs_every_write_by_default(tmp_path: Path) -> None:
    settings = broker_settings("", "t", data_dir=tmp_path / "data")
    async with running_broker(settings) as app:
        assert app.embedded is not None
        config = await settings_at(app.embedded.url)
    assert config == {**DURABLE, "appendfsync": "always"}
    assert problems(config) == []


async def test_jobwire_serve_without_flags_runs_appendfsync_always(tmp_path: Path) -> None:
    with serving("--redis-url", "", "--data-dir", str(tmp_path / "data")) as broker:
        config = await settings_at(valkey_url_of(broker))
    assert config == {**DURABLE, "appendfsync": "always"}


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--fsync", "everysec"], {}), ([], {"JOBWIRE_FSYNC": "everysec"})],
    ids=["flag", "environment"],
)
async def test_fsync_everysec_is_chosen_by_flag_or_environment(
    tmp_path: Path, flags: list[str], env: dict[str, str]
) -> None:
    args = ["--redis-url", "", "--data-dir", str(tmp_path / "data"), *flags]
    with serving(*args, env=env) as broker:
        config = await settings_at(valkey_url_of(broker))
    assert config == {**DURABLE, "appendfsync": "everysec"}


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--fsync", "no"], {}), ([], {"JOBWIRE_FSYNC": "sometimes"})],
    ids=["flag", "environment"],
)
def test_an_unknown_fsync_policy_is_a_usage_error(flags: list[str], env: dict[str, str]) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "jobwire_broker", "serve", "--listen", "127.0.0.1:0", *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=30,
    )
    assert run.returncode == 2
    assert "argument --fsync: invalid choice" in run.stderr
    assert "always, everysec" in run.stderr


def test_embedded_valkey_refuses_appendfsync_no(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="always, everysec"):
        EmbeddedValkey(tmp_path, appendfsync="no")


# -- an external Redis -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}, []),
        ({"appendonly": "no", "appendfsync": "always"}, ["appendonly is no"]),
        ({"appendonly": "yes", "appendfsync": "no"}, ["appendfsync is no"]),
        ({"appendonly": "no", "appendfsync": "no"}, ["appendonly is no"]),  # one cause is enough
        ({"appendonly": "yes", "no-appendfsync-on-rewrite": "yes"}, ["no-appendfsync-on-rewrite"]),
        ({"maxmemory-policy": "allkeys-lru"}, ["maxmemory-policy is allkeys-lru"]),
        # Idempotency keys carry a TTL: volatile-* would evict them.
        ({"maxmemory-policy": "volatile-ttl"}, ["maxmemory-policy is volatile-ttl"]),
        ({}, []),  # a server that reports nothing is not judged
    ],
)
def test_problems_name_each_setting_that_can_lose_jobs(
    config: dict[str, str], expected: list[str]
) -> None:
    found = problems(config)
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(start), line


async def test_settings_are_read_from_a_real_server(aof_server: RedisServer) -> None:
    config = await settings_at(aof_server.url)
    assert set(config) == set(SETTINGS)
    assert config["appendonly"] == "yes"
    assert problems(config) == []
    async with Redis.from_url(aof_server.url) as redis:
        await redis.config_set("maxmemory-policy", "allkeys-lru")
    (problem,) = problems(await settings_at(aof_server.url))
    assert "eviction deletes jobs" in problem


async def test_one_warning_for_a_redis_without_aof(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "jobwire_broker.durability")
    async with Redis.from_url(redis_server.url) as redis:
        await warn_if_not_durable(redis)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "Redis can lose acknowledged jobs: appendonly is no" in record.getMessage()


async def test_everysec_alone_is_one_info_line(
    aof_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "jobwire_broker.durability")
    async with Redis.from_url(aof_server.url) as redis:
        await redis.config_set("appendfsync", "everysec")
        await warn_if_not_durable(redis)
        await redis.config_set("appendfsync", "always")
        await warn_if_not_durable(redis)
    (record,) = caplog.records
    assert record.levelno == logging.INFO
    assert "appendfsync everysec" in record.getMessage()


async def test_nothing_is_said_when_config_is_refused_or_redis_is_down(
    aof_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis services often disable CONFIG; the check then skips quietly."""
    caplog.set_level(logging.INFO, "jobwire_broker.durability")
    async with Redis.from_url(aof_server.url) as admin:
        await admin.config_set("appendonly", "no")  # would warn, if it could be read
        await admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-config")
    limited = aof_server.url.replace("redis://", "redis://app:pw@")
    async with Redis.from_url(limited) as redis:
        assert await redis.ping()
        assert await read_settings(redis) is None
        await warn_if_not_durable(redis)
    aof_server.kill()
    async with Redis.from_url(aof_server.url, socket_connect_timeout=1) as redis:
        await asyncio.wait_for(warn_if_not_durable(redis), 5)
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []


async def test_the_broker_warns_once_at_startup_about_an_external_redis_without_aof(
    redis_server: RedisServer, prefix: str
) -> None:
    with serving("--redis-url", redis_server.url, "--key-prefix", prefix) as broker:
        pass
    warnings = [line for line in broker.output if "can lose acknowledged jobs" in line]
    assert len(warnings) == 1, "".join(broker.output)
    assert "WARNING" in warnings[0] and "appendonly is no" in warnings[0]


async def test_the_embedded_server_draws_no_warning(tmp_path: Path) -> None:
    with serving("--redis-url", "", "--data-dir", str(tmp_path / "data")) as broker:
        pass
    assert not [line for line in broker.output if "can lose acknowledged jobs" in line]
