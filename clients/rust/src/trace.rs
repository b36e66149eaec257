//! W3C trace context of the caller's OpenTelemetry context, for `JobSpec.trace_context`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::proto::v1::TraceContext;

/// traceparent/tracestate of the active span and the current baggage, or None when the
/// context carries neither.
pub(crate) fn inject(cx: &Context) -> Option<TraceContext> {
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(cx, &mut carrier);
    BaggagePropagator::new().inject_context(cx, &mut carrier);
    if carrier.is_empty() {
        return None;
    }
    let mut take = |key: &str| carrier.remove(key).unwrap_or_default();
    Some(TraceContext {
        traceparent: take("traceparent"),
        tracestate: take("tracestate"),
        baggage: take("baggage"),
    })
}
