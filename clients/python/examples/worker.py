"""A worker for the `emails` queue. Run it next to `jobwire serve`:

    python examples/worker.py

It stops on Ctrl-C or SIGTERM after finishing (or handing back) what it holds.
"""

import asyncio
import os

from jobwire import Job, NonRetryable, Worker

worker = Worker(os.environ.get("JOBWIRE_TARGET", "127.0.0.1:50051"), concurrency=10)


@worker.handler("emails")
async def send_email(job: Job) -> dict[str, str]:
    message = job.json()
    if "@" not in message["to"]:
        raise NonRetryable(f"not an address: {message['to']}")  # straight to dead letters
    job.progress(50, "rendering")
    await asyncio.sleep(0.1)  # the real work goes here
    job.progress(100, "sent")
    return {"status": "sent", "to": message["to"]}


if __name__ == "__main__":
    asyncio.run(worker.run())
