"""Demo producer: places one order a second. Each enqueue runs inside a `place order`
span, so the job's trace starts here and goes on through the broker and the worker.
Every fifth order is marked to fail once in the worker, then succeed on its retry."""

import asyncio
import itertools
import logging
import os
import uuid

from jobwire import Backoff, Client, JobwireError
from otel import setup

log = logging.getLogger("demo-producer")
QUEUE = "orders"


async def main() -> None:
    tracer = setup("demo-producer")
    run = uuid.uuid4().hex[:8]
    async with Client(os.environ.get("JOBWIRE_TARGET", "127.0.0.1:50051")) as client:
        for n in itertools.count(1):
            with tracer.start_as_current_span("place order", attributes={"demo.order": n}):
                try:
                    job = await client.enqueue(
                        QUEUE,
                        {"order": n, "fail_once": n % 5 == 0},
                        max_attempts=3,
                        backoff=Backoff.fixed(2),
                        # With a key the SDK may retry through a broker restart safely.
                        idempotency_key=f"order-{run}-{n}",
                    )
                    log.info("order %d enqueued as %s", n, job.job_id)
                except JobwireError as exc:
                    log.warning("order %d not enqueued: %s", n, exc)
            await asyncio.sleep(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(main())
