"""The broker's OpenTelemetry: a `jobwire serve` process exporting over OTLP/gRPC to a
real receiver. Jobs from raw stubs join the trace they carry (in the request or in the
call's metadata); enqueue, lease, settle, lease expiry and dead-lettering show as spans
in the job's trace; queue metrics arrive; and with no OTEL_* variables nothing is set up."""

import asyncio
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker import telemetry
from jobwire_broker.domain.instruments import DEAD_LETTER
from jobwire_broker.embedded import free_port
from opentelemetry import metrics, trace
from otlp_receiver import OtlpReceiver, Span
from support import BrokerProcess, RedisServer, stub_for, unique_prefix

SERVICE = "/jobwire.v1.BrokerService/"


@pytest.fixture
def traced(otlp: OtlpReceiver, redis_server: RedisServer) -> Iterator[BrokerProcess]:
    """A broker process with tracing and metrics on, exporting to `otlp`, and serving
    Prometheus /metrics on `traced.metrics_port`."""
    metrics_port = free_port()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "jobwire-broker",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    broker = BrokerProcess(
        "--redis-url",
        redis_server.url,
        "--key-prefix",
        unique_prefix(),
        "--metrics-port",
        str(metrics_port),
        env=env,
    )
    broker.metrics_port = metrics_port  # type: ignore[attr-defined]
    yield broker
    assert broker.terminate() == 0
    log = "".join(broker.output)
    assert "Traceback" not in log and "Failed to detach context" not in log, log


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def spec(traceparent: str = "", **fields: object) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(
        payload=b"{}",
        trace_context=job_pb2.TraceContext(traceparent=traceparent),
        **fields,  # type: ignore[arg-type]
    )


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return str(reply.read().decode())


def messaging(span: Span, operation: str, kind: str, queue: str) -> None:
    assert span.service == "jobwire-broker"
    assert span.attributes["messaging.system"] == "jobwire"
    assert span.attributes["messaging.operation.name"] == operation
    assert span.attributes["messaging.operation.type"] == kind
    assert span.attributes["messaging.destination.name"] == queue


async def test_a_job_enqueued_with_raw_stubs_and_a_hand_set_traceparent_joins_that_trace(
    traced: BrokerProcess, otlp: OtlpReceiver
) -> None:
    tp, trace_id, parent = traceparent()
    async with stub_for(traced.port) as stub:
        enqueued = await stub.Enqueue(pb.EnqueueRequest(queue="raw", job=spec(tp)))
        (held,) = (await stub.Lease(pb.LeaseRequest(queue="raw", max_jobs=1))).jobs
        assert held.job.spec.trace_context.traceparent == tp
        await stub.Complete(pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token))

    spans = await otlp.wait_for_spans(lambda s: s.trace_id == trace_id, count=3)
    by_name = {s.name: s for s in spans}
    assert sorted(by_name) == ["complete raw", "enqueue raw", "lease raw"]
    # The job's broker spans are children of the hand-set context...
    assert {s.parent_span_id for s in spans} == {parent}
    for span, operation, kind in [
        (by_name["enqueue raw"], "enqueue", "send"),
        (by_name["lease raw"], "lease", "receive"),
        (by_name["complete raw"], "complete", "settle"),
    ]:
        messaging(span, operation, kind, "raw")
        assert span.attributes["messaging.message.id"] == enqueued.job_id
        assert "messaging.batch.message_count" not in span.attributes
    assert by_name["lease raw"].attributes["jobwire.job.attempt"] == 1
    # ...while each call's gRPC server span, with no metadata from the client, starts a
    # trace of its own that the job's span links to.
    (server,) = await otlp.wait_for_spans(lambda s: s.name == SERVICE + "Enqueue")
    assert server.kind == "SERVER" and server.parent_span_id == ""
    assert server.trace_id != trace_id
    assert (server.trace_id, server.span_id) in by_name["enqueue raw"].links
    messaging(server, "enqueue", "send", "raw")


async def test_a_traceparent_sent_only_as_grpc_metadata_is_stored_with_the_job(
    traced: BrokerProcess, otlp: OtlpReceiver
) -> None:
    tp, trace_id, parent = traceparent()
    metadata = (("traceparent", tp), ("baggage", "tenant=t1"))
    async with stub_for(traced.port) as stub:
        one = await stub.Enqueue(pb.EnqueueRequest(queue="md", job=spec()), metadata=metadata)
        batch = await stub.EnqueueBatch(
            pb.EnqueueBatchRequest(queue="md", jobs=[spec(), spec()]), metadata=metadata
        )
        job_ids = [one.job_id, *(r.job_id for r in batch.results)]
        stored = [
            (await stub.GetJob(pb.GetJobRequest(job_id=j))).job.spec.trace_context for j in job_ids
        ]
        leased = (await stub.Lease(pb.LeaseRequest(queue="md", max_jobs=3))).jobs
        await stub.SettleBatch(
            pb.SettleBatchRequest(
                settlements=[
                    pb.Settlement(
                        complete=pb.CompleteRequest(job_id=h.job.id, lease_token=h.lease_token)
                    )
                    for h in leased
                ]
            )
        )

    assert [t.traceparent.split("-")[1] for t in stored] == [trace_id] * 3
    assert all(t.baggage == "tenant=t1" for t in stored)
    # Each job got its own creation context: the span id of its own enqueue span.
    job_span_ids = [t.traceparent.split("-")[2] for t in stored]
    assert len(set(job_span_ids)) == 3 and parent not in job_span_ids

    spans = await otlp.wait_for_spans(lambda s: s.trace_id == trace_id, count=2 + 3 * 3)
    servers = {s.name: s for s in spans if s.kind == "SERVER"}
    assert servers[SERVICE + "Enqueue"].parent_span_id == parent
    assert servers[SERVICE + "EnqueueBatch"].parent_span_id == parent
    assert servers[SERVICE + "EnqueueBatch"].attributes["messaging.batch.message_count"] == 2
    enqueues = [s for s in spans if s.name == "enqueue md"]
    assert sorted(s.span_id for s in enqueues) == sorted(job_span_ids)
    for span in enqueues:
        assert span.kind == "PRODUCER"
        messaging(span, "enqueue", "create", "md")
        assert otlp.span(span.parent_span_id) in servers.values()
    # Lease and complete hang under each job's own enqueue span.
    for name in ("lease md", "complete md"):
        assert sorted(s.parent_span_id for s in spans if s.name == name) == sorted(job_span_ids)


async def test_metadata_traceparent_is_stored_with_tracing_off(
    stub: rpc.BrokerServiceStub,
) -> None:
    """The in-process broker of the other tests runs with no telemetry at all."""
    tp, _, _ = traceparent()
    own_tp, _, _ = traceparent()
    one = await stub.Enqueue(
        pb.EnqueueRequest(queue="off", job=spec()),
        metadata=(("traceparent", tp), ("tracestate", "k=v")),
    )
    two = await stub.Enqueue(
        pb.EnqueueRequest(queue="off", job=spec(own_tp)), metadata=(("traceparent", tp),)
    )
    first = (await stub.GetJob(pb.GetJobRequest(job_id=one.job_id))).job.spec.trace_context
    second = (await stub.GetJob(pb.GetJobRequest(job_id=two.job_id))).job.spec.trace_context
    assert (first.traceparent, first.tracestate) == (tp, "k=v")
    assert second.traceparent == own_tp  # the request's own field wins


async def test_lease_expiry_is_an_expire_span_and_dead_lettering_an_event(
    traced: BrokerProcess, otlp: OtlpReceiver
) -> None:
    retried, retried_trace, _ = traceparent()
    dead, dead_trace, dead_parent = traceparent()
    failed, failed_trace, _ = traceparent()
    lease = {"lease_duration": {"seconds": 1}}
    async with stub_for(traced.port) as stub:
        await stub.EnqueueBatch(
            pb.EnqueueBatchRequest(
                queue="exp",
                jobs=[
                    spec(retried, max_attempts=2, **lease),
                    spec(dead, max_attempts=1, **lease),
                    spec(failed, max_attempts=3),
                ],
            )
        )
        held = (await stub.Lease(pb.LeaseRequest(queue="exp", max_jobs=3))).jobs
        assert len(held) == 3
        reply = await stub.Fail(
            pb.FailRequest(
                job_id=held[2].job.id,
                lease_token=held[2].lease_token,
                error=job_pb2.JobError(type="Boom", message="no", non_retryable=True),
            )
        )
        assert reply.state == job_pb2.JOB_STATE_DEAD

    def named(trace_id: str, name: str) -> Span:
        return next(s for s in otlp.spans_in(trace_id) if s.name == name)

    await otlp.wait_for_spans(lambda s: s.name == "expire exp", count=2)
    expired_dead = named(dead_trace, "expire exp")
    assert expired_dead.parent_span_id == dead_parent
    messaging(expired_dead, "expire", "settle", "exp")
    assert expired_dead.attributes["error.type"] == "LEASE_EXPIRED"
    assert expired_dead.attributes["jobwire.job.state"] == "dead"
    assert expired_dead.attributes["jobwire.job.attempt"] == 1
    event = expired_dead.event(DEAD_LETTER)
    assert event is not None and event.attributes["error.type"] == "LEASE_EXPIRED"
    assert expired_dead.status == "UNSET"  # an expected outcome, not a broker error

    expired_retried = named(retried_trace, "expire exp")
    assert expired_retried.attributes["jobwire.job.state"] == "scheduled"
    assert expired_retried.event(DEAD_LETTER) is None

    await otlp.wait_for_spans(lambda s: s.trace_id == failed_trace and s.name == "fail exp")
    fail = named(failed_trace, "fail exp")
    messaging(fail, "fail", "settle", "exp")
    assert fail.attributes["error.type"] == "Boom"
    assert fail.attributes["jobwire.job.state"] == "dead"
    assert fail.event(DEAD_LETTER) is not None


async def test_stream_progress_works_under_the_grpc_instrumentation(
    traced: BrokerProcess, otlp: OtlpReceiver
) -> None:
    tp, _, _ = traceparent()
    async with stub_for(traced.port) as stub:
        job_id = (await stub.Enqueue(pb.EnqueueRequest(queue="st", job=spec(tp)))).job_id
        stream = stub.StreamProgress(pb.StreamProgressRequest(job_id=job_id))
        first = await stream.read()
        assert first.kind == pb.EVENT_KIND_SNAPSHOT
        (held,) = (await stub.Lease(pb.LeaseRequest(queue="st", max_jobs=1))).jobs
        await stub.Heartbeat(
            pb.HeartbeatRequest(
                job_id=job_id,
                lease_token=held.lease_token,
                progress=job_pb2.Progress(percent=50, message="half"),
            )
        )
        await stub.Complete(pb.CompleteRequest(job_id=job_id, lease_token=held.lease_token))
        events = []
        while (event := await stream.read()) is not grpc.aio.EOF:
            events.append(event)
        assert events[-1].job.state == job_pb2.JOB_STATE_COMPLETED
        assert any(e.kind == pb.EVENT_KIND_PROGRESS for e in events)
        assert await stream.code() == grpc.StatusCode.OK

        # Errors raised inside the stream still leave as statuses...
        missing = stub.StreamProgress(pb.StreamProgressRequest(job_id="st:999"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await missing.read()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        # ...and a watcher that goes away mid-stream leaves nothing behind.
        other = (await stub.Enqueue(pb.EnqueueRequest(queue="st", job=spec()))).job_id
        watching = stub.StreamProgress(pb.StreamProgressRequest(job_id=other))
        await watching.read()
        watching.cancel()
        await asyncio.sleep(0.2)
        assert (await stub.GetJob(pb.GetJobRequest(job_id=other))).job.id == other

    streams = await otlp.wait_for_spans(lambda s: s.name == SERVICE + "StreamProgress", count=3)
    codes = [s.attributes["rpc.grpc.status_code"] for s in streams]
    assert grpc.StatusCode.OK.value[0] in codes
    assert grpc.StatusCode.NOT_FOUND.value[0] in codes
    # The fixture then checks the broker logged no "Failed to detach context": without
    # api/streams.py, the watcher that went away leaves one.


async def test_queue_metrics_arrive_over_otlp_and_prometheus(
    traced: BrokerProcess, otlp: OtlpReceiver
) -> None:
    queue = "depth"
    async with stub_for(traced.port) as stub:
        await stub.EnqueueBatch(
            pb.EnqueueBatchRequest(queue=queue, jobs=[spec() for _ in range(100)])
        )
        held = (await stub.Lease(pb.LeaseRequest(queue=queue, max_jobs=40))).jobs
        assert len(held) == 40
        await stub.SettleBatch(
            pb.SettleBatchRequest(
                settlements=[
                    pb.Settlement(
                        complete=pb.CompleteRequest(job_id=h.job.id, lease_token=h.lease_token)
                    )
                    for h in held
                ]
            )
        )

    expected = {"ready": 60, "scheduled": 0, "active": 0, "dead": 0}
    for state, n in expected.items():
        point = await otlp.wait_for_point(
            "jobwire.queue.depth",
            lambda p, n=n: p.value == n,  # type: ignore[misc]
            **{"messaging.destination.name": queue, "jobwire.job.state": state},
        )
        assert point.service == "jobwire-broker"
    waits = await otlp.wait_for_point(
        "jobwire.queue.wait.duration",
        lambda p: p.count == 40,
        **{"messaging.destination.name": queue},
    )
    assert 0 <= waits.value < 40 * 10  # seconds, summed over the 40 jobs
    await otlp.wait_for_point(
        "jobwire.server.operation.duration",
        **{"messaging.operation.name": "enqueue_batch", "messaging.destination.name": queue},
    )

    text = await asyncio.to_thread(scrape, traced.metrics_port)  # type: ignore[attr-defined]
    ready = re.search(
        r'^jobwire_queue_depth\{[^}]*jobwire_job_state="ready"[^}]*'
        r'messaging_destination_name="depth"[^}]*\} (\S+)$',
        text,
        re.M,
    )
    assert ready and float(ready.group(1)) == 60, text[:2000]


def test_no_otel_variables_install_no_sdk() -> None:
    before = trace.get_tracer_provider(), metrics.get_meter_provider()
    installed = telemetry.setup(env={})
    assert not installed.enabled
    assert installed.tracer_provider is None and installed.meter_provider is None
    assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before


def test_no_otel_variables_leave_the_default_proxies_in_a_fresh_process() -> None:
    """The same in a clean interpreter, where nothing else could have set a provider:
    the globals stay the API's proxies, and no trace SDK, exporter or instrumentation is
    even imported (redis-py imports the metrics SDK's classes on its own, unused)."""
    check = (
        "import sys\n"
        "from opentelemetry import metrics, trace\n"
        "from jobwire_broker import telemetry\n"
        "from jobwire_broker.server import BrokerApp\n"
        "assert not telemetry.setup().enabled\n"
        "assert type(trace.get_tracer_provider()) is trace.ProxyTracerProvider\n"
        "assert type(metrics.get_meter_provider()).__name__ == '_ProxyMeterProvider'\n"
        "kinds = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', "
        "'opentelemetry.instrumentation', 'prometheus_client')\n"
        "assert not [m for m in sys.modules if m.startswith(kinds)]\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run([sys.executable, "-c", check], env=env, check=True, timeout=60)


@pytest.mark.parametrize(
    ("env", "port", "spans", "metric_exporters"),
    [
        ({}, None, (), ()),
        ({"OTEL_SERVICE_NAME": "x"}, None, (), ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, None, ("otlp_proto_grpc",), None),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            },
            None,
            ("otlp_proto_http",),
            ("otlp_proto_http",),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"},
            None,
            (),
            ("otlp_proto_grpc",),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_METRICS_EXPORTER": "none"},
            ("127.0.0.1", 9464),
            ("otlp_proto_grpc",),
            ("prometheus",),
        ),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"},
            None,
            (),
            (),
        ),
        ({"OTEL_TRACES_EXPORTER": "console"}, None, ("console",), ()),
        ({}, ("0.0.0.0", 9464), (), ("prometheus",)),
    ],
)
def test_the_environment_picks_the_exporters(
    env: dict[str, str],
    port: tuple[str, int] | None,
    spans: tuple[str, ...],
    metric_exporters: tuple[str, ...] | None,
) -> None:
    chosen = telemetry.plan(env, port)
    assert chosen.span_exporters == spans
    assert chosen.metric_exporters == (spans if metric_exporters is None else metric_exporters)


def test_an_unknown_exporter_or_protocol_is_an_error() -> None:
    with pytest.raises(ValueError, match="zipkin"):
        telemetry.plan({"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(ValueError, match="protocol"):
        telemetry.plan({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier"})


async def test_a_malformed_traceparent_in_metadata_is_ignored(stub: rpc.BrokerServiceStub) -> None:
    for bad in ("garbage", f"00-{'0' * 32}-b7ad6b7169203331-01"):
        reply = await stub.Enqueue(
            pb.EnqueueRequest(queue="md", job=spec()), metadata=(("traceparent", bad),)
        )
        job = (await stub.GetJob(pb.GetJobRequest(job_id=reply.job_id))).job
        assert job.spec.trace_context == job_pb2.TraceContext()
