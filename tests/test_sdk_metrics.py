"""The SDK's metrics read back through the OpenTelemetry SDK's InMemoryMetricReader:
recorded with only a MeterProvider installed (no tracing) as well as with both, and with
the messaging conventions' histogram buckets. Runs in a child process, as providers are
global."""

import asyncio
import json
import sys

import pytest
from jobwire_broker.server import BrokerApp

# The advisory boundaries of messaging.process.duration and
# messaging.client.operation.duration in the semantic conventions.
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]

APP = """
import asyncio, json, sys
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
if sys.argv[2] == "traced":
    trace.set_tracer_provider(TracerProvider())

from jobwire import Client, Job, NonRetryable, Worker


async def main(target: str) -> None:
    worker = Worker(target, concurrency=2, lease_wait=1)
    done = asyncio.Event()
    seen = []

    @worker.handler("metered")
    async def handle(job: Job) -> str:
        seen.append(job.id)
        if len(seen) == 4:
            done.set()
        if job.json()["n"] == 3:
            raise NonRetryable("no")
        return "ok"

    async with Client(target) as client:
        await client.enqueue("metered", {"n": 0})
        await client.enqueue_batch("metered", [{"n": 1}, {"n": 2}, {"n": 3}])
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        await asyncio.wait_for(done.wait(), 20)
        await asyncio.sleep(0.3)  # the last settlements
        worker.stop()
        await asyncio.wait_for(running, 20)
    points = {}
    data = reader.get_metrics_data()  # None when nothing was recorded
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            if scope.scope.name != "jobwire":
                continue
            for metric in scope.metrics:
                points[metric.name] = [
                    {
                        "attributes": dict(p.attributes),
                        "count": getattr(p, "count", None),
                        "value": getattr(p, "value", None),
                        "bounds": list(getattr(p, "explicit_bounds", []) or []),
                    }
                    for p in metric.data.data_points
                ]
    tracing = type(trace.get_tracer_provider()).__name__
    print(json.dumps({"points": points, "tracer_provider": tracing}))


asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("tracing", ["untraced", "traced"])
async def test_metrics_need_only_a_meter_provider(broker: BrokerApp, tracing: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        APP,
        f"127.0.0.1:{broker.port}",
        tracing,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    traced = report["tracer_provider"] != "ProxyTracerProvider"
    assert traced == (tracing == "traced")
    points = report["points"]
    assert sorted(points) == [
        "messaging.client.consumed.messages",
        "messaging.client.operation.duration",
        "messaging.client.sent.messages",
        "messaging.process.duration",
    ]

    process = points["messaging.process.duration"]
    assert sum(p["count"] for p in process) == 4
    assert all(p["bounds"] == BUCKETS for p in process)
    by_error = {p["attributes"].get("error.type"): p["count"] for p in process}
    assert by_error == {None: 3, "NonRetryable": 1}
    assert all(p["attributes"]["messaging.destination.name"] == "metered" for p in process)

    operations = points["messaging.client.operation.duration"]
    assert all(p["bounds"] == BUCKETS for p in operations)
    kinds = {p["attributes"]["messaging.operation.name"] for p in operations}
    assert {"send", "receive", "settle"} <= kinds

    (sent,) = points["messaging.client.sent.messages"]
    assert sent["value"] == 4 and sent["attributes"]["messaging.destination.name"] == "metered"
    assert sum(p["value"] for p in points["messaging.client.consumed.messages"]) == 4
