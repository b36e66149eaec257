"""`jobwire serve` as users run it: embedded Valkey with AOF, Redis with a password,
and a graceful stop on SIGTERM."""

import asyncio
import time
from pathlib import Path

import grpc
import psutil
import pytest
from helpers import enqueue, lease
from support import BrokerProcess, RedisServer, stub_for


async def test_embedded_valkey_persists_with_aof_and_stops_with_the_broker(
    tmp_path: Path,
) -> None:
    broker = BrokerProcess("--redis-url", "", "--data-dir", str(tmp_path / "data"))
    try:
        (valkey,) = psutil.Process(broker.process.pid).children()
        assert "valkey-server" in valkey.name()
        async with stub_for(broker.port) as stub:
            job_id = await enqueue(stub, "embedded")
            assert job_id == "embedded:1"
        assert any((tmp_path / "data").glob("appendonlydir/*.aof"))
        assert broker.terminate() == 0
        assert not valkey.is_running() or valkey.status() == psutil.STATUS_ZOMBIE
    finally:
        broker.kill()


async def test_redis_with_a_password(tmp_path: Path) -> None:
    server = RedisServer(password="s3cret").start()
    try:
        broker = BrokerProcess("--redis-url", server.url)
        try:
            async with stub_for(broker.port) as stub:
                await enqueue(stub)
                assert len(await lease(stub)) == 1
        finally:
            broker.kill()
        wrong = BrokerProcess("--redis-url", server.url.replace("s3cret", "wrong"))
        try:
            async with stub_for(wrong.port) as stub:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await enqueue(stub)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            wrong.kill()
    finally:
        server.stop()


async def test_sigterm_releases_waiting_leases_and_exits_zero(
    redis_server: RedisServer, prefix: str
) -> None:
    broker = BrokerProcess("--redis-url", redis_server.url, "--key-prefix", prefix)
    try:
        async with stub_for(broker.port) as stub:
            waiting = asyncio.create_task(lease(stub, wait_ms=30_000))
            await asyncio.sleep(0.3)
            start = time.monotonic()
            code = await asyncio.to_thread(broker.terminate)
            assert code == 0
            assert await asyncio.wait_for(waiting, 5) == []
            assert time.monotonic() - start < 10
    finally:
        broker.kill()


async def test_sigterm_ends_open_watch_streams_promptly_with_unavailable(
    redis_server: RedisServer, prefix: str
) -> None:
    from jobwire.v1 import broker_service_pb2 as pb

    broker = BrokerProcess("--redis-url", redis_server.url, "--key-prefix", prefix)
    try:
        async with stub_for(broker.port) as stub:
            job_id = await enqueue(stub)
            stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))
            assert (await stream.read()).kind == pb.EVENT_KIND_SNAPSHOT
            start = time.monotonic()
            assert await asyncio.to_thread(broker.terminate) == 0
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stream.read()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - start < 3
    finally:
        broker.kill()


async def test_a_sigkilled_broker_does_not_leave_its_valkey_behind(tmp_path: Path) -> None:
    broker = BrokerProcess("--redis-url", "", "--data-dir", str(tmp_path / "data"))
    (valkey,) = psutil.Process(broker.process.pid).children()
    broker.kill()
    valkey.wait(10)  # raises psutil.TimeoutExpired if it outlives its broker
    assert not valkey.is_running()
