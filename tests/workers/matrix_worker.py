"""Processes N jobs of a queue with an OpenTelemetry SDK installed, printing one JSON
line per job: what arrived (payload, headers, trace context) and the trace id and
parent of the handler's span. Completes each job with its payload reversed.

    python matrix_worker.py TARGET QUEUE N
"""

import asyncio
import base64
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

trace.set_tracer_provider(TracerProvider())  # real spans, nothing exported

from jobwire import Job, Worker  # noqa: E402  (after the SDK, as an app would)

target, queue, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
worker = Worker(target, concurrency=4, lease_wait=1, grace_period=5)
seen = 0


@worker.handler(queue)
async def handle(job: Job) -> bytes:
    global seen
    span = trace.get_current_span()
    parent = getattr(span, "parent", None)
    print(
        json.dumps(
            {
                "id": job.id,
                "payload": base64.b64encode(job.payload).decode(),
                "headers": dict(job.headers),
                "traceparent": job.trace_context["traceparent"],
                "span_trace_id": format(span.get_span_context().trace_id, "032x"),
                "span_parent_id": format(parent.span_id, "016x") if parent else "",
                "span_kind": getattr(span, "kind", None) and span.kind.name,
            }
        ),
        flush=True,
    )
    seen += 1
    if seen >= count:
        worker.stop()
    return job.payload[::-1]


asyncio.run(worker.run())
