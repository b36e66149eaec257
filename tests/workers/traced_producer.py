"""Enqueues the jobs of the tracing test inside a 'checkout' span, then 98 more:
100 jobs in all. Prints one JSON line with the job ids and the checkout trace id.

    python traced_producer.py TARGET QUEUE
"""

import asyncio
import json
import sys

from otel_setup import setup

shutdown = setup("shop-api")

from jobwire import Backoff, Client  # noqa: E402
from opentelemetry import trace  # noqa: E402


async def main(target: str, queue: str) -> None:
    tracer = trace.get_tracer("shop")
    async with Client(target) as client:
        with tracer.start_as_current_span("checkout") as checkout:
            ok = await client.enqueue(queue, b"ok")
            flaky = await client.enqueue(
                queue, b"flaky", max_attempts=3, backoff=Backoff.fixed(0.2)
            )
        batch = await client.enqueue_batch(queue, [b"batch-a", b"batch-b"])  # no parent
        await client.enqueue_batch(queue, [b"filler"] * 96)
    print(
        json.dumps(
            {
                "ok": ok.job_id,
                "flaky": flaky.job_id,
                "batch": [r.job_id for r in batch],
                "trace_id": format(checkout.get_span_context().trace_id, "032x"),
            }
        ),
        flush=True,
    )


asyncio.run(main(sys.argv[1], sys.argv[2]))
shutdown()
