"""Processes the tracing test's jobs: 'flaky' fails its first attempt. Exits once every
job has completed.

    python traced_worker.py TARGET QUEUE COUNT
"""

import asyncio
import sys

from otel_setup import setup

shutdown = setup("shop-worker")

from jobwire import Job, Worker  # noqa: E402

target, queue, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = Worker(target, concurrency=4, lease_wait=1)
completed = 0


@worker.handler(queue)
async def handle(job: Job) -> str:
    global completed
    if job.payload == b"flaky" and job.attempt == 1:
        raise ConnectionError("payment provider refused the connection")
    job.progress(100, "done")
    completed += 1
    if completed >= count:
        worker.stop()
    return "ok"


asyncio.run(worker.run())
shutdown()
