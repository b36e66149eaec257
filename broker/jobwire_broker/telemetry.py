"""OpenTelemetry for the broker, configured from the standard OTEL_* environment variables.
Off unless an exporter is configured: then no SDK is imported or installed at all."""

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import MetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

SERVICE_NAME = "jobwire-broker"
OTLP_PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
SPAN_EXPORTERS = {"otlp_proto_grpc", "otlp_proto_http", "console"}
METRIC_EXPORTERS = {"otlp_proto_grpc", "otlp_proto_http", "console", "prometheus"}


@dataclass(frozen=True, slots=True)
class Plan:
    """Which exporters the environment asks for; empty tuples mean that signal is off."""

    span_exporters: tuple[str, ...] = ()
    metric_exporters: tuple[str, ...] = ()
    prometheus_address: tuple[str, int] | None = None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _otlp(env: Mapping[str, str], signal: str) -> str:
    """The OTLP exporter for a signal, by OTEL_EXPORTER_OTLP_[SIGNAL_]PROTOCOL. grpc is
    the default, as in the OpenTelemetry Python SDK's own configurator."""
    protocol = (
        env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    ).strip()
    if protocol not in OTLP_PROTOCOLS:
        raise ValueError(f"unsupported OTLP protocol {protocol!r}: use grpc or http/protobuf")
    return OTLP_PROTOCOLS[protocol]


def _exporters(env: Mapping[str, str], signal: str, known: set[str]) -> tuple[str, ...]:
    """OTEL_<SIGNAL>_EXPORTER when set; otherwise OTLP if an OTLP endpoint is, else none."""
    names = env.get(f"OTEL_{signal}_EXPORTER")
    if names is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
            f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"
        )
        names = "otlp" if endpoint else "none"
    chosen: list[str] = []
    for raw in names.split(","):
        name = raw.strip().lower()
        if name in ("", "none"):
            continue
        if name == "otlp":
            name = _otlp(env, signal)
        if name not in known:
            raise ValueError(f"OTEL_{signal}_EXPORTER: unsupported exporter {name!r}")
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def plan(env: Mapping[str, str], metrics_address: tuple[str, int] | None = None) -> Plan:
    """What setup() would install for this environment and --metrics-port."""
    if _truthy(env.get("OTEL_SDK_DISABLED")):
        if metrics_address:
            log.warning("OTEL_SDK_DISABLED is true: not serving /metrics")
        return Plan()
    spans = _exporters(env, "TRACES", SPAN_EXPORTERS)
    metrics = list(_exporters(env, "METRICS", METRIC_EXPORTERS))
    if "prometheus" in metrics and metrics_address is None:
        metrics_address = (
            env.get("OTEL_EXPORTER_PROMETHEUS_HOST", "localhost"),
            int(env.get("OTEL_EXPORTER_PROMETHEUS_PORT", "9464")),
        )
    if metrics_address and "prometheus" not in metrics:
        metrics.append("prometheus")
    return Plan(spans, tuple(metrics), metrics_address if metrics_address else None)


@dataclass
class Telemetry:
    """What setup() installed. Providers are None for a signal that is off."""

    tracer_provider: "TracerProvider | None" = None
    meter_provider: "MeterProvider | None" = None
    _closers: list[Any] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.tracer_provider is not None or self.meter_provider is not None

    def shutdown(self) -> None:
        """Flushes what is buffered and stops the exporters and the /metrics server."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()
        for close in self._closers:
            close()


def setup(
    metrics_address: tuple[str, int] | None = None,
    env: Mapping[str, str] | None = None,
    install: bool = True,
) -> Telemetry:
    """Builds tracer and meter providers from the environment and, with `install`, makes
    them the global ones. `metrics_address` serves Prometheus' /metrics there."""
    chosen = plan(os.environ if env is None else env, metrics_address)
    telemetry = Telemetry()
    if not (chosen.span_exporters or chosen.metric_exporters):
        return telemetry
    from opentelemetry import metrics, trace  # only when configured

    resource = _resource()
    if chosen.span_exporters:
        telemetry.tracer_provider = _tracer_provider(chosen.span_exporters, resource)
        if install:
            trace.set_tracer_provider(telemetry.tracer_provider)
    if chosen.metric_exporters:
        readers = [_reader(name, chosen, telemetry) for name in chosen.metric_exporters]
        from opentelemetry.sdk.metrics import MeterProvider

        telemetry.meter_provider = MeterProvider(metric_readers=readers, resource=resource)
        if install:
            metrics.set_meter_provider(telemetry.meter_provider)
    log.info(
        "telemetry on: traces to %s, metrics to %s",
        ", ".join(chosen.span_exporters) or "nowhere",
        ", ".join(chosen.metric_exporters) or "nowhere",
    )
    return telemetry


def _resource() -> "Resource":
    from opentelemetry.sdk.resources import SERVICE_NAME as KEY
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({KEY: SERVICE_NAME}))
    return resource


def _tracer_provider(names: tuple[str, ...], resource: "Resource") -> "TracerProvider":
    """Sampler from OTEL_TRACES_SAMPLER[_ARG], batching from OTEL_BSP_*, endpoints and
    headers from OTEL_EXPORTER_OTLP_*: the SDK classes read those themselves."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(resource=resource)
    for name in names:
        exporter: SpanExporter
        if name == "otlp_proto_grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter,
            )

            exporter = OTLPSpanExporter()
        elif name == "otlp_proto_http":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HTTPSpanExporter,
            )

            exporter = HTTPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _reader(name: str, chosen: Plan, telemetry: Telemetry) -> "MetricReader":
    """A push reader (interval from OTEL_METRIC_EXPORT_INTERVAL) or Prometheus' pull one."""
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        MetricExporter,
        PeriodicExportingMetricReader,
    )

    if name == "prometheus":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        assert chosen.prometheus_address is not None
        host, port = chosen.prometheus_address
        server, _ = start_http_server(port, host)
        telemetry._closers.append(server.shutdown)
        log.info("serving Prometheus metrics on http://%s:%d/metrics", host, port)
        return PrometheusMetricReader()
    exporter: MetricExporter
    if name == "otlp_proto_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter,
        )

        exporter = OTLPMetricExporter()
    elif name == "otlp_proto_http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
            OTLPMetricExporter as HTTPMetricExporter,
        )

        exporter = HTTPMetricExporter()
    else:
        exporter = ConsoleMetricExporter()
    return PeriodicExportingMetricReader(exporter)
