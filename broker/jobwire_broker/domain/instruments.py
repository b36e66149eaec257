"""Spans and metrics for each job, made from what the store returns: each transition
shows in the job's own trace, a child of the W3C context stored with the job.

Off by default (no providers): then every hook returns at once."""

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation
from opentelemetry.semconv._incubating.attributes import messaging_attributes as messaging
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ..store import Store
from .hooks import NoHooks, SettledItem
from .model import (
    CompleteItem,
    Enqueued,
    FailItem,
    FailResult,
    ItemResult,
    JobRecord,
    JobState,
    NewJob,
    Reclaimed,
    ReleaseItem,
    TraceContext,
)

log = logging.getLogger(__name__)

SCOPE = "jobwire_broker"
SYSTEM = "jobwire"
STATE = "jobwire.job.state"
ATTEMPT = "jobwire.job.attempt"
DUPLICATE = "jobwire.job.duplicate"
DEAD_LETTER = "jobwire.dead_letter"  # event on the span that sent the job to `dead`
DEPTH_STATES = (JobState.READY, JobState.SCHEDULED, JobState.ACTIVE, JobState.DEAD)
DEPTH_TIMEOUT_S = 5.0
# Seconds, from a few ms on an idle queue to an hour behind on a backlog.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

TRACECONTEXT = TraceContextTextMapPropagator()
BAGGAGE = W3CBaggagePropagator()

Attributes = dict[str, AttributeValue]


def job_context(t: TraceContext) -> otel_context.Context:
    """The context a job carries, as a parent for the broker's spans about it."""
    carrier = {"traceparent": t.traceparent, "tracestate": t.tracestate, "baggage": t.baggage}
    return BAGGAGE.extract(carrier, TRACECONTEXT.extract(carrier))


def trace_of(ctx: otel_context.Context) -> TraceContext:
    carrier: dict[str, str] = {}
    TRACECONTEXT.inject(carrier, ctx)
    BAGGAGE.inject(carrier, ctx)
    return TraceContext(
        carrier.get("traceparent", ""), carrier.get("tracestate", ""), carrier.get("baggage", "")
    )


def _attributes(operation: str, kind: str, queue: str) -> Attributes:
    return {
        messaging.MESSAGING_SYSTEM: SYSTEM,
        messaging.MESSAGING_OPERATION_NAME: operation,
        messaging.MESSAGING_OPERATION_TYPE: kind,
        messaging.MESSAGING_DESTINATION_NAME: queue,
    }


OPERATIONS = {CompleteItem: "complete", FailItem: "fail", ReleaseItem: "release"}


class Instruments:
    """The broker's per-job telemetry. With no providers (the default) nothing is made."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.tracing = tracer_provider is not None
        self.metrics = meter_provider is not None
        if tracer_provider is not None:
            self._tracer = tracer_provider.get_tracer(SCOPE)
        if meter_provider is not None:
            self._meter: Meter = meter_provider.get_meter(SCOPE)
            self._wait = self._meter.create_histogram(
                "jobwire.queue.wait.duration",
                unit="s",
                description="Time a job waited in ready, from its due time to its lease.",
                explicit_bucket_boundaries_advisory=WAIT_BUCKETS,
            )
            self.operation_duration: Histogram = self._meter.create_histogram(
                "jobwire.server.operation.duration",
                unit="s",
                description="Time the broker took to serve a unary call.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )

    # -- the gRPC server span of the call -------------------------------------------------

    def describe_call(
        self, operation: str, kind: str, queue: str = "", batch: int | None = None
    ) -> None:
        """Adds messaging attributes to the current (gRPC server) span."""
        if not self.tracing:
            return
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes = _attributes(operation, kind, queue)
        if not queue:
            del attributes[messaging.MESSAGING_DESTINATION_NAME]
        if batch is not None:
            attributes[messaging.MESSAGING_BATCH_MESSAGE_COUNT] = batch
        span.set_attributes(attributes)

    # -- per job --------------------------------------------------------------------------

    def _start(
        self,
        name: str,
        parent: otel_context.Context,
        attributes: Attributes,
        start_ns: int | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Span:
        """A span in the job's trace, linked to the call that caused it when that call is
        in another trace (a producer that sent no metadata, a worker's own trace)."""
        call = trace.get_current_span().get_span_context()
        links = None
        if call.is_valid and call.trace_id != _span_context(parent).trace_id:
            links = [Link(call)]
        return self._tracer.start_span(
            name, parent, kind, attributes=attributes, links=links, start_time=start_ns
        )

    def enqueuing(
        self, queue: str, jobs: Sequence[NewJob], caller: TraceContext | None
    ) -> tuple[Sequence[NewJob], Any]:
        """Starts one `enqueue <queue>` span per job, child of the job's own context. A job
        without one joins the caller's trace (the gRPC server span, else the context in
        the call's metadata) and stores its enqueue span's context, so that in a batch
        each job has its own."""
        if not self.tracing:
            return NoHooks().enqueuing(queue, jobs, caller)
        here = otel_context.get_current()
        if not _span_context(here).is_valid and caller is not None:
            here = job_context(caller)
        out, spans = [], []
        for job in jobs:
            own = bool(job.trace.traceparent)
            parent = job_context(job.trace) if own else here
            # A job the broker gives a context to is created here: its span is the
            # message's creation context, a PRODUCER span of type "create".
            span = self._start(
                f"enqueue {queue}",
                parent,
                _attributes("enqueue", "send" if own else "create", queue),
                kind=SpanKind.INTERNAL if own else SpanKind.PRODUCER,
            )
            if not own:
                job = dataclasses.replace(
                    job, trace=trace_of(trace.set_span_in_context(span, here))
                )
            out.append(job)
            spans.append(span)
        return out, spans

    def enqueued(self, queue: str, token: Any, results: Sequence[Enqueued]) -> None:
        if not token:  # not tracing (metrics only): no spans were started
            return
        spans: list[Span] = token
        end = time.time_ns()
        for span, r in zip(spans, results, strict=True):
            if span.is_recording():
                span.set_attribute(messaging.MESSAGING_MESSAGE_ID, f"{queue}:{r.seq}")
                span.set_attribute(STATE, r.state.value)
                if r.duplicate:
                    span.set_attribute(DUPLICATE, True)
            span.end(end)

    def enqueue_failed(self, token: Any, error: Exception) -> None:
        """Ends the enqueue spans, marked failed."""
        end = time.time_ns()
        for span in token or []:
            span.record_exception(error)
            span.set_attribute(ERROR_TYPE, type(error).__qualname__)
            span.set_status(StatusCode.ERROR, str(error))
            span.end(end)

    def leased(self, queue: str, jobs: Sequence[JobRecord], start_ns: int) -> None:
        """A `lease <queue>` span per job, and each job's wait in ready."""
        if self.metrics and jobs:
            at: Attributes = {
                messaging.MESSAGING_SYSTEM: SYSTEM,
                messaging.MESSAGING_DESTINATION_NAME: queue,
            }
            for job in jobs:
                waited_ms = job.started_ms - max(job.run_at_ms, job.created_ms)
                self._wait.record(max(waited_ms, 0) / 1000, at)
        if not self.tracing:
            return
        end = time.time_ns()
        for job in jobs:
            if job.trace.traceparent:
                attributes = _attributes("lease", "receive", queue)
                attributes[messaging.MESSAGING_MESSAGE_ID] = job.id
                attributes[ATTEMPT] = job.attempt
                self._start(f"lease {queue}", job_context(job.trace), attributes, start_ns).end(end)

    def settled(
        self,
        items: Sequence[SettledItem],
        results: Sequence[ItemResult | FailResult],
        start_ns: int,
    ) -> None:
        """A `complete`, `fail` or `release <queue>` span per job that was settled."""
        if not self.tracing:
            return
        end = time.time_ns()
        for (queue, item), result in zip(items, results, strict=True):
            if not result.trace.traceparent:  # not settled (lease lost), or never traced
                continue
            operation = OPERATIONS[type(item)]
            attributes = _attributes(operation, "settle", queue)
            attributes[messaging.MESSAGING_MESSAGE_ID] = f"{queue}:{item.seq}"
            if isinstance(item, FailItem):
                attributes[ERROR_TYPE] = item.error.type
            if isinstance(result, FailResult) and result.state is not None:
                attributes[STATE] = result.state.value
            span = self._start(
                f"{operation} {queue}", job_context(result.trace), attributes, start_ns
            )
            if attributes.get(STATE) == JobState.DEAD.value:
                assert isinstance(item, FailItem)
                span.add_event(DEAD_LETTER, {ERROR_TYPE: item.error.type}, end)
            span.end(end)

    def expired(self, queue: str, reclaimed: Sequence[Reclaimed], start_ns: int) -> None:
        """An `expire <queue>` span per lease the maintenance loop took back."""
        if not self.tracing:
            return
        end = time.time_ns()
        for r in reclaimed:
            if not r.trace.traceparent:
                continue
            attributes = _attributes("expire", "settle", queue)
            attributes[messaging.MESSAGING_MESSAGE_ID] = f"{queue}:{r.seq}"
            attributes[ERROR_TYPE] = r.error_type
            attributes[ATTEMPT] = r.attempt
            attributes[STATE] = r.state.value
            span = self._start(f"expire {queue}", job_context(r.trace), attributes, start_ns)
            if r.state is JobState.DEAD:
                span.add_event(DEAD_LETTER, {ERROR_TYPE: r.error_type, ATTEMPT: r.attempt}, end)
            span.end(end)

    # -- queue depth ----------------------------------------------------------------------

    def observe_depth(self, store: Store) -> None:
        """Registers the queue depth gauge. Metric readers call it from their own thread;
        it reads Redis on the broker's event loop, so it must be called on that loop."""
        if not self.metrics:
            return
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            # On the loop thread (a final collect at shutdown) waiting would deadlock.
            if threading.get_ident() == loop_thread or loop.is_closed():
                return []
            future = asyncio.run_coroutine_threadsafe(store.depths(DEPTH_STATES), loop)
            try:
                depths = future.result(min(options.timeout_millis / 1000, DEPTH_TIMEOUT_S))
            except Exception as exc:
                future.cancel()
                log.debug("queue depth not read: %r", exc)
                return []
            return [
                Observation(
                    n,
                    {
                        messaging.MESSAGING_SYSTEM: SYSTEM,
                        messaging.MESSAGING_DESTINATION_NAME: queue,
                        STATE: state.value,
                    },
                )
                for queue, counts in depths.items()
                for state, n in counts.items()
            ]

        self._meter.create_observable_gauge(
            "jobwire.queue.depth",
            [observe],
            unit="{job}",
            description="Jobs in each state of each known queue.",
        )


def _span_context(ctx: otel_context.Context) -> SpanContext:
    return trace.get_current_span(ctx).get_span_context()
