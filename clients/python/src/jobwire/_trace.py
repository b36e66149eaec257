"""W3C trace context in and out of jobs, through the OpenTelemetry API's propagators.
With no OpenTelemetry SDK configured these are cheap no-ops."""

from collections.abc import Mapping

from opentelemetry import context, propagate


def current_trace_context() -> dict[str, str]:
    """traceparent/tracestate/baggage of the active span, for JobSpec.trace_context."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {k: carrier[k] for k in ("traceparent", "tracestate", "baggage") if k in carrier}


def extract(carrier: Mapping[str, str]) -> context.Context:
    return propagate.extract({k: v for k, v in carrier.items() if v})
