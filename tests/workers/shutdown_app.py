"""A worker for the SIGTERM test: each job sleeps the seconds in its payload."""

import asyncio
import os

from jobwire import Job, Worker

worker = Worker(os.environ["JOBWIRE_TARGET"], concurrency=4, lease_wait=1, grace_period=10)


@worker.handler("sleepy")
async def sleepy(job: Job) -> str:
    await asyncio.sleep(float(job.payload))
    return "slept"
