// W3C trace context and baggage carried in JobSpec.trace_context, through the
// OpenTelemetry propagator API: inject on enqueue, extract in the worker.

import {
  context as otelContext,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Context,
  type TextMapPropagator,
} from "@opentelemetry/api";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import type { TraceContext } from "./gen/jobwire/v1/job.js";

/** `traceparent` + `tracestate` (W3C Trace Context) and `baggage` (W3C Baggage). */
export function defaultPropagator(): TextMapPropagator {
  return new CompositePropagator({
    propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
  });
}

/** The carrier keys are the W3C header names, which are also TraceContext's fields. */
export function injectTraceContext(propagator: TextMapPropagator, ctx: Context = otelContext.active()): TraceContext | undefined {
  const carrier: Record<string, string> = {};
  propagator.inject(ctx, carrier, defaultTextMapSetter);
  const traceparent = carrier["traceparent"] ?? "";
  const baggage = carrier["baggage"] ?? "";
  if (!traceparent && !baggage) return undefined;
  return { traceparent, tracestate: carrier["tracestate"] ?? "", baggage };
}

/** The producer's context (remote span and baggage), or ROOT_CONTEXT when the job has none. */
export function extractTraceContext(propagator: TextMapPropagator, trace: TraceContext | undefined): Context {
  if (!trace) return ROOT_CONTEXT;
  const carrier: Record<string, string> = {};
  if (trace.traceparent) carrier["traceparent"] = trace.traceparent;
  if (trace.tracestate) carrier["tracestate"] = trace.tracestate;
  if (trace.baggage) carrier["baggage"] = trace.baggage;
  return propagator.extract(ROOT_CONTEXT, carrier, defaultTextMapGetter);
}
