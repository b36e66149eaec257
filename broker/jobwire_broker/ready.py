"""The ready file (`--ready-file`): how a broker tells the process that started it that it
serves, and on which ports, without anyone parsing the log line meant for people.

Format, version 1, one JSON object:

    {"version": 1, "pid": 4242, "grpc_address": "127.0.0.1:50051", "grpc_port": 50051,
     "metrics_port": 0}

`grpc_address` is --listen's host with the bound port; `metrics_port` is 0 when /metrics
is off. Readers ignore keys they do not know; a change to a key's meaning bumps
`version`. The file appears whole (written beside its path, then renamed over it) once
the gRPC server has started, and is removed on a clean shutdown.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

VERSION = 1


class ReadyFileError(Exception):
    """The ready file cannot be written; the message names the path and the reason."""

    def __init__(self, path: Path, reason: OSError | str) -> None:
        why = (reason.strerror or str(reason)) if isinstance(reason, OSError) else reason
        super().__init__(f"cannot write the ready file {path}: {why}")


def facts(listen: str, grpc_port: int, metrics_port: int) -> dict[str, object]:
    host = listen.rpartition(":")[0]
    return {
        "version": VERSION,
        "pid": os.getpid(),
        "grpc_address": f"{host}:{grpc_port}",
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
    }


def check(path: Path) -> None:
    """Fails now, before anything starts, if `path` cannot become the ready file; removes
    a file left there by an earlier run, so it is never taken for this one's."""
    if path.is_dir():
        raise ReadyFileError(path, "is a directory")
    try:
        fd, temp = _temp_beside(path)  # the directory exists and takes new files
        os.close(fd)
        os.unlink(temp)
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise ReadyFileError(path, exc) from exc


def write(path: Path, content: dict[str, object]) -> None:
    """Writes `content` to `path` atomically: a reader sees no file or all of it."""
    fd, temp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(content, out)
            out.write("\n")
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide it from a harness under another uid
        # No fsync: the reader is a live process, and rename is atomic for it without one.
        os.replace(temp, path)
    except OSError as exc:
        raise ReadyFileError(path, exc) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def remove(path: Path) -> None:
    """Removes the ready file if it is still this process's (another broker may have been
    started with the same path since)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()


def _temp_beside(path: Path) -> tuple[int, str]:
    # Same directory, so the rename never crosses a file system; a dot name, so a reader
    # globbing for the file does not pick up the half-written one.
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
