"""A real OTLP/gRPC receiver for tests: takes the spans and metrics a broker (or an SDK)
exports, keeps them in memory, and answers questions about them. It runs a grpc.aio
server on its own thread and event loop, so a test may block (starting a process, say)
without stalling exports."""

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_rpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_rpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

KINDS = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "CONSUMER",
}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}


def _value(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attributes(v.kvlist_value.values)
    return getattr(v, kind) if kind else None


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass(frozen=True)
class Event:
    name: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class Span:
    """One received span, with ids as lowercase hex (parent_span_id "" for a root)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    status: str
    attributes: dict[str, Any]
    events: list[Event]
    links: list[tuple[str, str]]  # (trace_id, span_id)
    service: str
    start_ns: int
    end_ns: int

    def event(self, name: str) -> Event | None:
        return next((e for e in self.events if e.name == name), None)


@dataclass(frozen=True)
class Point:
    """One data point of a received metric: a gauge or sum value, or a histogram's
    count and sum."""

    metric: str
    attributes: dict[str, Any]
    value: float
    count: int
    service: str
    time_ns: int


@dataclass
class Store:
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Traces(trace_rpc.TraceServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def Export(
        self, request: trace_pb.ExportTraceServiceRequest, context: Any
    ) -> trace_pb.ExportTraceServiceResponse:
        received = []
        for rs in request.resource_spans:
            service = str(_attributes(rs.resource.attributes).get("service.name", ""))
            for ss in rs.scope_spans:
                for s in ss.spans:
                    received.append(
                        Span(
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            name=s.name,
                            kind=KINDS.get(s.kind, "UNSPECIFIED"),
                            status=STATUSES.get(s.status.code, "UNSET"),
                            attributes=_attributes(s.attributes),
                            events=[Event(e.name, _attributes(e.attributes)) for e in s.events],
                            links=[(lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links],
                            service=service,
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                        )
                    )
        with self.store.lock:
            self.store.spans.extend(received)
        return trace_pb.ExportTraceServiceResponse()


class _Metrics(metrics_rpc.MetricsServiceServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def Export(
        self, request: metrics_pb.ExportMetricsServiceRequest, context: Any
    ) -> metrics_pb.ExportMetricsServiceResponse:
        received = []
        for rm in request.resource_metrics:
            service = str(_attributes(rm.resource.attributes).get("service.name", ""))
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind) if kind else None
                    for p in getattr(data, "data_points", ()):
                        if kind in ("gauge", "sum"):
                            value = p.as_double if p.HasField("as_double") else p.as_int
                            count = 1
                        else:  # histogram and kin
                            value, count = p.sum, p.count
                        received.append(
                            Point(
                                m.name,
                                _attributes(p.attributes),
                                float(value),
                                int(count),
                                service,
                                p.time_unix_nano,
                            )
                        )
        with self.store.lock:
            self.store.points.extend(received)
        return metrics_pb.ExportMetricsServiceResponse()


class OtlpReceiver:
    """`start()` binds 127.0.0.1:0; `endpoint` is what OTEL_EXPORTER_OTLP_ENDPOINT takes."""

    def __init__(self) -> None:
        self.store = Store()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OtlpReceiver":
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> int:
        self._server = grpc.aio.server()
        trace_rpc.add_TraceServiceServicer_to_server(_Traces(self.store), self._server)
        metrics_rpc.add_MetricsServiceServicer_to_server(_Metrics(self.store), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return port

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # -- queries ----------------------------------------------------------------------

    @property
    def spans(self) -> list[Span]:
        with self.store.lock:
            return list(self.store.spans)

    @property
    def points(self) -> list[Point]:
        with self.store.lock:
            return list(self.store.points)

    def spans_in(self, trace_id: str) -> list[Span]:
        """Every span of one trace, oldest first."""
        return sorted((s for s in self.spans if s.trace_id == trace_id), key=lambda s: s.start_ns)

    def span(self, span_id: str) -> Span | None:
        return next((s for s in self.spans if s.span_id == span_id), None)

    async def wait_for_spans(
        self, predicate: Callable[[Span], bool], count: int = 1, timeout_s: float = 15.0
    ) -> list[Span]:
        """The spans matching `predicate`, once there are at least `count` of them."""
        end = time.monotonic() + timeout_s
        while True:
            found = [s for s in self.spans if predicate(s)]
            if len(found) >= count:
                return found
            if time.monotonic() > end:
                names = sorted({s.name for s in self.spans})
                raise AssertionError(
                    f"{len(found)} of {count} spans within {timeout_s}s; received: {names}"
                )
            await asyncio.sleep(0.05)

    def latest(self, metric: str, **attributes: Any) -> Point | None:
        """The newest point of a metric whose attributes include `attributes`."""
        matching = [
            p
            for p in self.points
            if p.metric == metric and all(p.attributes.get(k) == v for k, v in attributes.items())
        ]
        return max(matching, key=lambda p: p.time_ns) if matching else None

    async def wait_for_point(
        self,
        metric: str,
        predicate: Callable[[Point], bool] = lambda p: True,
        timeout_s: float = 15.0,
        **attributes: Any,
    ) -> Point:
        """Waits until the newest matching point satisfies `predicate`."""
        end = time.monotonic() + timeout_s
        while True:
            point = self.latest(metric, **attributes)
            if point is not None and predicate(point):
                return point
            if time.monotonic() > end:
                raise AssertionError(f"{metric}{attributes}: last point {point}")
            await asyncio.sleep(0.05)
