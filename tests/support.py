"""Real servers for tests: Valkey/Redis processes and broker replicas, in-process or as
separate processes that tests may SIGKILL."""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire_broker.config import Settings
from jobwire_broker.embedded import free_port, valkey_binary
from jobwire_broker.server import BrokerApp

ROOT = Path(__file__).resolve().parent.parent


def redis_server_binary() -> str:
    """JOBWIRE_TEST_REDIS_SERVER picks the server (e.g. redis-server); Valkey by default."""
    chosen = os.environ.get("JOBWIRE_TEST_REDIS_SERVER", "")
    return shutil.which(chosen) or chosen if chosen else valkey_binary()


class RedisServer:
    """A real Valkey/Redis process on loopback. Persistence off unless `aof`."""

    def __init__(self, aof: bool = False, port: int = 0, password: str = "") -> None:
        self.port = port or free_port()
        self.aof = aof
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="jobwire-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir,
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for_port(port: int, timeout_s: float = 15.0) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing answered PING on port {port}")


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


def broker_settings(redis_url: str, prefix: str, **overrides: Any) -> Settings:
    return Settings(
        listen="127.0.0.1:0", redis_url=redis_url, key_prefix=prefix, grace_s=0.5, **overrides
    )


@contextlib.asynccontextmanager
async def running_broker(settings: Settings) -> AsyncIterator[BrokerApp]:
    app = BrokerApp(settings)
    await app.start()
    try:
        yield app
    finally:
        await app.stop(grace_s=0.2)


@contextlib.asynccontextmanager
async def stub_for(port: int) -> AsyncIterator[rpc.BrokerServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield rpc.BrokerServiceStub(channel)


class BrokerProcess:
    """`jobwire serve` as a separate process, so a test can SIGKILL it. It is ready when
    its ready file appears (in a temporary directory, or at `ready_file`); `ready` holds
    what the file says."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, ready_file: Path | None = None
    ) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="jobwire-broker-"))
        self.ready_file = ready_file or self._dir / "ready.json"
        cmd = [
            *(sys.executable, "-m", "jobwire_broker", "serve", "--listen", "127.0.0.1:0"),
            *("--ready-file", str(self.ready_file), *args),
        ]
        self.process = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.output: list[str] = []
        # Keep draining, or a chatty broker blocks once the pipe buffer is full.
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()
        try:
            self.ready: dict[str, Any] = self._wait_ready()
        except RuntimeError:
            self.kill()
            raise
        self.port: int = self.ready["grpc_port"]

    def _read_rest(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout:
            for line in self.process.stdout:
                self.output.append(line.decode(errors="replace"))

    def _wait_ready(self, timeout_s: float = 30.0) -> dict[str, Any]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.ready_file.exists():  # whole once it exists: the broker renames it there
                facts: dict[str, Any] = json.loads(self.ready_file.read_text())
                return facts
            if self.process.poll() is not None:
                self._drain.join(5)
                raise RuntimeError(
                    f"broker exited with {self.process.returncode} before it was ready:\n"
                    + "".join(self.output)
                )
            time.sleep(0.02)
        raise RuntimeError(f"broker not ready after {timeout_s} s:\n" + "".join(self.output))

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._drain.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)

    def terminate(self, timeout_s: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self._drain.join(5)
        shutil.rmtree(self._dir, ignore_errors=True)
        return code


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, every_s: float = 0.02
) -> None:
    """Polls an async condition until true; fails the test after timeout_s."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if await check():
            return
        await asyncio.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s}s")
