"""Handlers for `jobwire worker` in tests/test_cli.py, offered both ways the CLI takes
them: `cli_app:worker` (a Worker instance) and `cli_app:handlers` (a queue → handler
dict). Each result says how many jobs of its queue were running when it started, so
a test can read the concurrency the worker really used."""

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from jobwire import Job, Worker

_lock = threading.Lock()
_running: Counter[str] = Counter()


def _start(queue: str) -> int:
    with _lock:
        _running[queue] += 1
        return _running[queue]


def _end(queue: str) -> None:
    with _lock:
        _running[queue] -= 1


async def run_async(job: Job) -> dict[str, Any]:
    running = _start(job.queue)
    try:
        job.progress(50, "halfway")
        await asyncio.sleep(float(job.json().get("sleep", 0.2)))
        return {"queue": job.queue, "running": running, "payload": job.json()}
    finally:
        _end(job.queue)


def run_sync(job: Job) -> dict[str, Any]:
    running = _start(job.queue)
    try:
        job.progress(50, "halfway")
        time.sleep(float(job.json().get("sleep", 0.2)))
        return {"queue": job.queue, "running": running, "payload": job.json()}
    finally:
        _end(job.queue)


handlers = {"cli-a": run_async, "cli-b": run_sync}

# The CLI replaces the target with --target. A short long-poll lets SIGTERM end it soon:
# the worker waits for its pending Lease call before it exits.
worker = Worker("127.0.0.1:1", concurrency=2, lease_wait=1.0)
for _queue, _handler in handlers.items():
    worker.register(_queue, _handler)
