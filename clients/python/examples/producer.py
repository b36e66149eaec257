"""Enqueues one email job and follows it until it is done:

python examples/producer.py
"""

import asyncio
import os

from jobwire import Backoff, Client


async def main() -> None:
    async with Client(os.environ.get("JOBWIRE_TARGET", "127.0.0.1:50051")) as client:
        job = await client.enqueue(
            "emails",
            {"to": "ada@example.com", "subject": "Welcome"},
            max_attempts=5,
            backoff=Backoff.exponential(initial=2.0, max=60.0, jitter=0.2),
            idempotency_key="welcome-ada",
        )
        print("enqueued", job.job_id)
        async for event in client.watch(job.job_id):
            progress = f" {event.progress.percent:g}%" if event.progress else ""
            print(f"{event.kind:8} {event.state.name.lower()}{progress}")
        print("result", (await client.get(job.job_id)).result_json())


if __name__ == "__main__":
    asyncio.run(main())
