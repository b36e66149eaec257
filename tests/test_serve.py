"""`jobwire serve` as users run it: embedded Valkey with AOF, Redis with a password,
a graceful stop on SIGTERM, and the ready file that declares its ports."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from helpers import enqueue, lease
from jobwire_broker import ready
from jobwire_broker.cli import parser, settings_from
from jobwire_broker.embedded import free_port
from support import ROOT, BrokerProcess, RedisServer, eventually, stub_for


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


# -- the ready file (--ready-file) ----------------------------------------------------


async def test_the_ready_file_declares_the_bound_ports_and_goes_away_on_sigterm(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "ready.json"
    metrics_port = free_port()
    broker = BrokerProcess(
        *("--redis-url", redis_server.url, "--key-prefix", prefix),
        *("--metrics-port", str(metrics_port)),
        ready_file=path,
    )
    try:
        port = broker.ready["grpc_port"]
        assert broker.ready == {
            "version": 1,
            "pid": broker.process.pid,
            "grpc_address": f"127.0.0.1:{port}",
            "grpc_port": port,
            "metrics_port": metrics_port,
        }
        assert port > 0
        assert os.listdir(tmp_path) == ["ready.json"]  # no temp file left behind
        assert path.stat().st_mode & 0o777 == 0o644
        async with stub_for(port) as stub:
            assert await enqueue(stub)
        # The line for people stays, and says the same.

        async def said() -> bool:
            return any(
                f"jobwire: serving on 127.0.0.1:0 (port {port})" in line for line in broker.output
            )

        await eventually(said)
        assert await asyncio.to_thread(broker.terminate) == 0
        assert not path.exists()
    finally:
        broker.kill()


def test_the_ready_file_comes_from_jobwire_ready_file_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("JOBWIRE_READY_FILE", str(tmp_path / "r.json"))
    assert settings_from(parser().parse_args(["serve"])).ready_file == tmp_path / "r.json"
    monkeypatch.setenv("JOBWIRE_READY_FILE", "")
    assert settings_from(parser().parse_args(["serve"])).ready_file is None


def test_the_ready_file_is_replaced_whole(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Written beside its path and renamed over it: a reader holding the old file still
    reads all of the old one, and the new one is complete before it takes the name."""
    path = tmp_path / "ready.json"
    path.write_text('{"version": 1, "pid": 1}\n')
    content = ready.facts("127.0.0.1:0", 5555, 0)
    renamed: list[tuple[Path, str]] = []
    real_replace = os.replace

    def replace(src: str, dst: Path) -> None:
        renamed.append((Path(src), Path(src).read_text()))
        assert json.loads(path.read_text()) == {"version": 1, "pid": 1}  # untouched so far
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with path.open() as old:
        ready.write(path, content)
        assert json.loads(old.read()) == {"version": 1, "pid": 1}
    [(temp, written)] = renamed
    assert temp.parent == tmp_path and temp.name.startswith(".ready.json.")
    assert json.loads(written) == content
    assert json.loads(path.read_text()) == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready.json"]


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "ready.json"
    with pytest.raises(TypeError):
        ready.write(path, {"not json": object()})
    assert list(tmp_path.iterdir()) == []


def test_a_stale_ready_file_is_removed_at_startup_and_another_brokers_is_kept(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ready.json"
    path.write_text('{"version": 1, "pid": 1, "grpc_port": 1}\n')
    ready.check(path)
    assert not path.exists()
    path.write_text('{"version": 1, "pid": 1, "grpc_port": 1}\n')
    ready.remove(path)  # not ours: a broker started since with the same path wrote it
    assert path.exists()
    ready.write(path, ready.facts("127.0.0.1:0", 5555, 0))
    ready.remove(path)
    assert not path.exists()


def in_missing_directory(tmp_path: Path) -> Path:
    return tmp_path / "missing" / "ready.json"


def under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").touch()
    return tmp_path / "file" / "ready.json"


def a_directory(tmp_path: Path) -> Path:
    (tmp_path / "ready.json").mkdir()
    return tmp_path / "ready.json"


def in_read_only_directory(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories")
    (tmp_path / "read-only").mkdir(mode=0o500)
    return tmp_path / "read-only" / "ready.json"


@pytest.mark.parametrize(
    ("bad_path", "reason"),
    [
        (in_missing_directory, "No such file or directory"),
        (under_a_file, "Not a directory"),
        (a_directory, "is a directory"),
        (in_read_only_directory, "Permission denied"),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_a_ready_file_that_cannot_be_written_fails_startup_before_anything_starts(
    tmp_path: Path, bad_path: Callable[[Path], Path], reason: str
) -> None:
    path = bad_path(tmp_path)
    data = tmp_path / "data"
    serve = [sys.executable, "-m", "jobwire_broker", "serve", "--listen", "127.0.0.1:0"]
    run = subprocess.run(
        [*serve, "--redis-url", "", "--data-dir", str(data), "--ready-file", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"jobwire serve: cannot write the ready file {path}: {reason}\n"
    assert not data.exists()  # it failed before starting the embedded Valkey
    assert [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] == []
