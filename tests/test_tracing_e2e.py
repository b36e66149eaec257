"""Issue 4, end to end: producer, broker and worker as separate processes, each exporting
OTLP to a real receiver. One job is one trace: the producer's PRODUCER span, the
broker's spans and the worker's CONSUMER span(s), with the conventions' names and
attributes; a failed-then-retried job shows both attempts; metrics count 100 jobs."""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from otlp_receiver import OtlpReceiver, Point, Span
from support import BrokerProcess, RedisServer

WORKERS = Path(__file__).resolve().parent / "workers"
QUEUE = "orders"


@dataclass
class Run:
    jobs: dict[str, object]
    spans: list[Span]


def otel_env(otlp: OtlpReceiver, service: str) -> dict[str, str]:
    return {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": service,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "PYTHONPATH": str(WORKERS),
    }


async def run(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-3000:]
    return out.decode()


@pytest.fixture
async def traced_run(
    otlp: OtlpReceiver, redis_server: RedisServer, prefix: str
) -> AsyncIterator[Run]:
    broker = BrokerProcess(
        "--redis-url",
        redis_server.url,
        "--key-prefix",
        prefix,
        env=otel_env(otlp, "jobwire-broker"),
    )
    try:
        target = f"127.0.0.1:{broker.port}"
        worker = asyncio.create_task(
            run(
                otel_env(otlp, "shop-worker"),
                str(WORKERS / "traced_worker.py"),
                target,
                QUEUE,
                "100",
            )
        )
        out = await run(
            otel_env(otlp, "shop-api"), str(WORKERS / "traced_producer.py"), target, QUEUE
        )
        await worker
        jobs = json.loads(out.strip().splitlines()[-1])
        await otlp.wait_for_spans(lambda s: s.name == f"process {QUEUE}", count=101)
        yield Run(jobs, otlp.spans)
    finally:
        broker.terminate()


def only(spans: list[Span], **match: object) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in match.items())]
    assert len(found) == 1, f"{len(found)} spans match {match}: {[s.name for s in found]}"
    return found[0]


def messaging(span: Span, operation: str, kind: str, job_id: str | None = None) -> None:
    a = span.attributes
    assert a["messaging.system"] == "jobwire"
    assert a["messaging.operation.name"] == operation
    assert a["messaging.operation.type"] == kind
    assert a["messaging.destination.name"] == QUEUE
    if job_id is not None:
        assert a["messaging.message.id"] == job_id


async def test_one_trace_from_producer_through_broker_to_worker(traced_run: Run) -> None:
    trace_id = str(traced_run.jobs["trace_id"])
    spans = [s for s in traced_run.spans if s.trace_id == trace_id]
    services = {s.service for s in spans}
    assert {"shop-api", "jobwire-broker", "shop-worker"} <= services

    checkout = only(spans, name="checkout")
    sends = [s for s in spans if s.name == f"send {QUEUE}"]
    assert len(sends) == 2 and all(s.kind == "PRODUCER" for s in sends)
    assert {s.parent_span_id for s in sends} == {checkout.span_id}
    ok_id = str(traced_run.jobs["ok"])
    send = next(s for s in sends if s.attributes["messaging.message.id"] == ok_id)
    messaging(send, "send", "send", ok_id)

    # The broker's gRPC server span is the producer's child; its own work joins the trace.
    server = only(spans, name="/jobwire.v1.BrokerService/Enqueue", parent_span_id=send.span_id)
    assert server.kind == "SERVER"
    broker_names = {s.name for s in spans if s.service == "jobwire-broker"}
    assert {f"enqueue {QUEUE}", f"lease {QUEUE}"} <= broker_names

    process = only(spans, name=f"process {QUEUE}", parent_span_id=send.span_id)
    assert process.kind == "CONSUMER" and process.service == "shop-worker"
    assert (trace_id, send.span_id) in process.links
    messaging(process, "process", "process", ok_id)
    assert process.attributes["jobwire.job.attempt"] == 1
    assert process.event("jobwire.progress") is not None


async def test_a_retried_job_shows_both_attempts_with_their_errors(traced_run: Run) -> None:
    trace_id = str(traced_run.jobs["trace_id"])
    flaky_id = str(traced_run.jobs["flaky"])
    attempts = sorted(
        (
            s
            for s in traced_run.spans
            if s.trace_id == trace_id
            and s.name == f"process {QUEUE}"
            and s.attributes["messaging.message.id"] == flaky_id
        ),
        key=lambda s: s.attributes["jobwire.job.attempt"],
    )
    assert [s.attributes["jobwire.job.attempt"] for s in attempts] == [1, 2]
    first, second = attempts
    assert first.status == "ERROR" and first.attributes["error.type"] == "ConnectionError"
    exception = first.event("exception")
    assert exception is not None
    assert "payment provider" in str(exception.attributes["exception.message"])
    assert second.status != "ERROR" and "error.type" not in second.attributes
    assert first.parent_span_id == second.parent_span_id  # both children of the send span
    fails = [s for s in traced_run.spans if s.trace_id == trace_id and s.name == f"fail {QUEUE}"]
    assert fails, "the broker's Fail is in the job's trace"


async def test_batch_jobs_get_create_spans_linked_from_send(traced_run: Run) -> None:
    a, b = (str(j) for j in traced_run.jobs["batch"])  # type: ignore[attr-defined]
    spans = traced_run.spans
    send = next(
        s
        for s in spans
        if s.name == f"send {QUEUE}" and s.attributes.get("messaging.batch.message_count") == 2
    )
    assert send.parent_span_id == ""  # no active span: a fresh trace
    # Each job's creation context is its own create span (its own trace, with no active
    # span), linked from the send span.
    creates = [s for s in spans if (s.trace_id, s.span_id) in set(send.links)]
    assert len(creates) == 2 and {c.name for c in creates} == {f"create {QUEUE}"}
    for job_id in (a, b):
        process = next(
            s
            for s in spans
            if s.name == f"process {QUEUE}" and s.attributes["messaging.message.id"] == job_id
        )
        assert process.parent_span_id in {c.span_id for c in creates}


async def test_receive_and_settle_spans(traced_run: Run) -> None:
    receives = [s for s in traced_run.spans if s.name == f"receive {QUEUE}"]
    assert receives and all(s.kind == "CLIENT" for s in receives)
    messaging(receives[0], "receive", "receive")
    assert sum(len(s.links) for s in receives) >= 100
    settles = [
        s for s in traced_run.spans if s.service == "shop-worker" and s.name.startswith("settle")
    ]
    assert settles and all(s.kind == "CLIENT" for s in settles)


async def series_totals(otlp: OtlpReceiver, metric: str) -> dict[str, int]:
    """Histogram counts of the newest point of each series, keyed by error.type."""
    totals: dict[str, int] = {}
    for _ in range(100):
        latest: dict[frozenset[tuple[str, object]], Point] = {}
        for p in otlp.points:
            key = frozenset(p.attributes.items())
            if p.metric == metric and (key not in latest or p.time_ns > latest[key].time_ns):
                latest[key] = p
        totals = {str(p.attributes.get("error.type", "")): p.count for p in latest.values()}
        if sum(totals.values()) >= 101:
            break
        await asyncio.sleep(0.1)
    return totals


async def test_metrics_count_the_100_jobs(traced_run: Run, otlp: OtlpReceiver) -> None:
    sent = await otlp.wait_for_point(
        "messaging.client.sent.messages", lambda p: p.service == "shop-api" and p.value >= 100
    )
    assert sent.value == 100
    consumed = await otlp.wait_for_point(
        "messaging.client.consumed.messages", lambda p: p.value >= 101
    )
    assert consumed.value == 101  # the retried job was delivered twice
    # Failed attempts are their own series (with error.type): add up every series.
    processed = await series_totals(otlp, "messaging.process.duration")
    assert processed == {"": 100, "ConnectionError": 1}
    await otlp.wait_for_point("messaging.client.operation.duration")
