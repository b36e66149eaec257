"""Demo worker: processes orders. The SDK runs each attempt in a CONSUMER span in the
job's trace; the handler's own spans (`charge card`, `ship`) hang under it. An order
marked `fail_once` fails its first attempt and succeeds on the retry."""

import asyncio
import logging
import os
import random

from jobwire import Job, Worker
from otel import setup

tracer = setup("demo-worker")
worker = Worker(os.environ.get("JOBWIRE_TARGET", "127.0.0.1:50051"), concurrency=4)


@worker.handler("orders")
async def process(job: Job) -> dict[str, object]:
    order = job.json()
    with tracer.start_as_current_span("charge card", attributes={"demo.order": order["order"]}):
        await asyncio.sleep(random.uniform(0.02, 0.2))
    job.progress(50, "charged")
    if order["fail_once"] and job.attempt == 1:
        raise ConnectionError("card network timed out (demo: fails once, then retries)")
    with tracer.start_as_current_span("ship"):
        await asyncio.sleep(random.uniform(0.02, 0.1))
    return {"order": order["order"], "status": "shipped", "attempt": job.attempt}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    asyncio.run(worker.run())
