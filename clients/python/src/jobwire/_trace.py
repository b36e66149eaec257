"""OpenTelemetry for the SDK, after the messaging semantic conventions and the contrib
instrumentations (aio-pika, celery): inject on the producer inside its span, extract on
the consumer, attach for the handler, detach after.

Everything goes through the OpenTelemetry API only. Spans are made once the application
installs a TracerProvider, metrics once it installs a MeterProvider, each independently
of the other. Until either is installed, `enabled()` is false and the SDK skips all of
this, so telemetry off costs next to nothing.
"""

import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import Token
from typing import Any

from opentelemetry import context, metrics, propagate, trace
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

SYSTEM = "jobwire"
NO_CONTEXT: dict[str, str] = {}  # shared and never written: each job's context when off
MAX_LINKS = 128
# The messaging conventions' advice for both duration histograms, in seconds (the SDK's
# default buckets start at 0, 5, 10 s: every sub-second job would land in one).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)
tracer = trace.get_tracer("jobwire")
meter = metrics.get_meter("jobwire")
sent_messages = meter.create_counter(
    "messaging.client.sent.messages",
    unit="{message}",
    description="Messages a producer attempted to send to the broker.",
)
consumed_messages = meter.create_counter(
    "messaging.client.consumed.messages",
    unit="{message}",
    description="Messages delivered to a consumer.",
)
process_duration = meter.create_histogram(
    "messaging.process.duration",
    unit="s",
    description="Duration of processing a message.",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)
operation_duration = meter.create_histogram(
    "messaging.client.operation.duration",
    unit="s",
    description="Duration of a messaging operation initiated by a producer or consumer client.",
    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
)
# What get_meter_provider() returns while no SDK is installed. The API's stand-in has no
# public name (unlike trace.ProxyTracerProvider), so it is imported from _internal.
NO_METER_PROVIDERS = (_ProxyMeterProvider, metrics.NoOpMeterProvider)

_tracing = False
_metering = False
_checked_at = -1.0


def _check() -> None:
    """Asks the API which providers are installed. That costs microseconds (an
    environment lookup and an ABC check), so a yes is kept for good and a no is asked
    again at most once a second."""
    global _tracing, _metering, _checked_at
    now = time.monotonic()
    if now - _checked_at < 1.0:
        return
    _checked_at = now
    if not _tracing:
        _tracing = not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    if not _metering:
        _metering = not isinstance(metrics.get_meter_provider(), NO_METER_PROVIDERS)


def enabled() -> bool:
    """True once the application has installed an OpenTelemetry SDK for traces or for
    metrics: the one check on the hot path while both are off."""
    if _tracing or _metering:
        return True
    _check()
    return _tracing or _metering


def tracing() -> bool:
    """True once a TracerProvider is installed: make spans."""
    if not _tracing:
        _check()
    return _tracing


def metering() -> bool:
    """True once a MeterProvider is installed: record metrics."""
    if not _metering:
        _check()
    return _metering


class _Constant(contextlib.AbstractContextManager[Any]):
    """What the context managers below return while telemetry is off: no work at all."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __enter__(self) -> Any:
        return self.value

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _Constant(trace.INVALID_SPAN)


class Processing:
    """One handler run as telemetry sees it: its span (INVALID_SPAN without tracing) and
    the error type to record with its duration."""

    __slots__ = ("error_type", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self.error_type: str | None = None


NO_PROCESSING = Processing(trace.INVALID_SPAN)  # shared while telemetry is off: never written
NO_PROCESS = _Constant(NO_PROCESSING)


def _attributes(operation: str, kind: str, queue: str, **extra: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": kind,
    }
    if queue:
        attrs["messaging.destination.name"] = queue
    attrs.update({k: v for k, v in extra.items() if v is not None})
    return attrs


def carrier() -> dict[str, str]:
    """traceparent/tracestate/baggage of the current context."""
    out: dict[str, str] = {}
    propagate.inject(out)
    return {k: out[k] for k in ("traceparent", "tracestate", "baggage") if k in out}


def extract(values: Mapping[str, str]) -> context.Context:
    return propagate.extract({k: v for k, v in values.items() if v})


def grpc_metadata(base: Sequence[tuple[str, str]]) -> Sequence[tuple[str, str]]:
    """Call metadata with the current trace context, so broker spans join the caller's."""
    return [*base, *carrier().items()] if enabled() and tracing() else base


class Send:
    """A PRODUCER `send <queue>` span; for a batch, one `create <queue>` span per job,
    linked from the send span. `trace_contexts` gives each job the context to store."""

    def __init__(self, queue: str, count: int) -> None:
        self.queue, self.count = queue, count
        self.trace_contexts: list[dict[str, str]] = [NO_CONTEXT] * count
        self.span: trace.Span = trace.INVALID_SPAN
        self._start: float | None = None  # set while telemetry is on
        self._token: Token[context.Context] | None = None

    def __enter__(self) -> "Send":
        if not enabled():
            return self
        self._start = time.perf_counter()
        if not tracing():
            return self
        self.trace_contexts = [{} for _ in range(self.count)]
        batch = self.count if self.count > 1 else None
        links: list[Link] = []
        if batch is not None:
            for i in range(self.count):
                create = tracer.start_span(
                    f"create {self.queue}",
                    kind=SpanKind.PRODUCER,
                    attributes=_attributes("create", "create", self.queue),
                )
                with trace.use_span(create, end_on_exit=True):
                    self.trace_contexts[i] = carrier()
                if len(links) < MAX_LINKS:
                    links.append(Link(create.get_span_context()))
        self.span = tracer.start_span(
            f"send {self.queue}",
            kind=SpanKind.PRODUCER,
            links=links,
            attributes=_attributes(
                "send", "send", self.queue, **{"messaging.batch.message_count": batch}
            ),
        )
        self._token = context.attach(trace.set_span_in_context(self.span))
        if batch is None:
            self.trace_contexts = [carrier()]
        return self

    def done(self, job_ids: Sequence[str]) -> None:
        if self.span.is_recording() and len(job_ids) == 1:
            self.span.set_attribute("messaging.message.id", job_ids[0])

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: object
    ) -> None:
        if self._start is None:
            return
        attrs = _attributes("send", "send", self.queue)
        if error is not None:
            attrs["error.type"] = type(error).__name__
            if self.span.is_recording():
                self.span.record_exception(error)
                self.span.set_status(Status(StatusCode.ERROR, str(error)))
        if metering():
            sent_messages.add(self.count, attrs)
            operation_duration.record(time.perf_counter() - self._start, attrs)
        if self._token is not None:
            context.detach(self._token)
            self.span.end()


def record_receive(queue: str, started_ns: int, jobs: Sequence[Mapping[str, str]]) -> None:
    """A CLIENT `receive <queue>` span for a Lease that returned jobs, linking each job's
    creation context. Empty long-polls leave no span."""
    if not jobs or not enabled():
        return
    attrs = _attributes("receive", "receive", queue)
    if tracing():
        links = []
        for values in jobs[:MAX_LINKS]:
            span_context = trace.get_current_span(extract(values)).get_span_context()
            if span_context.is_valid:
                links.append(Link(span_context))
        batch = len(jobs) if len(jobs) > 1 else None
        span = tracer.start_span(
            f"receive {queue}",
            kind=SpanKind.CLIENT,
            links=links,
            start_time=started_ns,
            attributes={**attrs, "messaging.batch.message_count": batch} if batch else attrs,
        )
        span.end()
    if metering():
        consumed_messages.add(len(jobs), attrs)
        operation_duration.record((time.time_ns() - started_ns) / 1e9, attrs)


def process(
    queue: str, job_id: str, attempt: int, values: Mapping[str, str], link_only: bool
) -> contextlib.AbstractContextManager[Processing]:
    """A CONSUMER `process <queue>` span around a handler: child of the job's creation
    context (one joined trace), or only linked to it when `link_only`; and the
    handler's duration in messaging.process.duration."""
    if not enabled():
        return NO_PROCESS
    return _process(queue, job_id, attempt, values, link_only)


@contextlib.contextmanager
def _process(
    queue: str, job_id: str, attempt: int, values: Mapping[str, str], link_only: bool
) -> Iterator[Processing]:
    start = time.perf_counter()
    span: trace.Span = trace.INVALID_SPAN
    token = None
    if tracing():
        parent = extract(values)
        creation = trace.get_current_span(parent).get_span_context()
        span = tracer.start_span(
            f"process {queue}",
            context=None if link_only else parent,
            kind=SpanKind.CONSUMER,
            links=[Link(creation)] if creation.is_valid else [],
            attributes=_attributes(
                "process",
                "process",
                queue,
                **{"messaging.message.id": job_id, "jobwire.job.attempt": attempt},
            ),
        )
        token = context.attach(trace.set_span_in_context(span, None if link_only else parent))
    run = Processing(span)
    try:
        yield run
    finally:
        if token is not None:
            context.detach(token)
        if metering():
            attrs = _attributes("process", "process", queue)
            if run.error_type:
                attrs["error.type"] = run.error_type
            process_duration.record(time.perf_counter() - start, attrs)
        span.end()


def failed(run: Processing, error: BaseException, ends_job: bool) -> None:
    """Records a handler failure. Expected failures (retry after a delay) are events,
    not span errors; a failure that is retried or ends the job is an ERROR."""
    if run is NO_PROCESSING:
        return
    run.error_type = type(error).__name__
    span = run.span
    if not span.is_recording():
        return
    span.set_attribute("error.type", run.error_type)
    span.record_exception(error)
    if ends_job or not getattr(error, "expected", False):
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def event(span: trace.Span, name: str, **attributes: Any) -> None:
    if span.is_recording():
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})


def settle(
    queues: Sequence[str], links: Sequence[trace.SpanContext]
) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT settle span for one SettleBatch call, linked to each job's process span."""
    if not enabled():
        return NO_SPAN
    return _settle(queues, links)


@contextlib.contextmanager
def _settle(queues: Sequence[str], links: Sequence[trace.SpanContext]) -> Iterator[None]:
    queue = queues[0] if len(set(queues)) == 1 else ""
    attrs = _attributes("settle", "settle", queue)
    batch = len(queues) if len(queues) > 1 else None
    start = time.perf_counter()
    span: trace.Span = trace.INVALID_SPAN
    scope: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if tracing():
        span = tracer.start_span(
            f"settle {queue}".strip(),
            kind=SpanKind.CLIENT,
            links=[Link(s) for s in links[:MAX_LINKS] if s.is_valid],
            attributes={**attrs, "messaging.batch.message_count": batch} if batch else attrs,
        )
        scope = trace.use_span(span, end_on_exit=False, record_exception=True)
    try:
        with scope:
            yield
    except Exception as error:
        attrs["error.type"] = type(error).__name__
        raise
    finally:
        if metering():
            operation_duration.record(time.perf_counter() - start, attrs)
        span.end()
