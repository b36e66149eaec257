"""What the broker tells telemetry, as an interface: the domain calls these at each
step, the same way whether anything listens, and NoHooks (the default) does nothing.
domain/instruments.py implements them with OpenTelemetry spans and metrics."""

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol

from .model import (
    CompleteItem,
    Enqueued,
    FailItem,
    FailResult,
    ItemResult,
    JobRecord,
    NewJob,
    Reclaimed,
    ReleaseItem,
    TraceContext,
)

SettledItem = tuple[str, CompleteItem | FailItem | ReleaseItem]


class Hooks(Protocol):
    def describe_call(
        self, operation: str, kind: str, queue: str = "", batch: int | None = None
    ) -> None:
        """Names what the current gRPC call does (messaging attributes of its span)."""

    def enqueuing(
        self, queue: str, jobs: Sequence[NewJob], caller: TraceContext | None
    ) -> tuple[Sequence[NewJob], Any]:
        """Before an enqueue: the jobs as they are to be stored (each with the trace
        context it joins) and a token for enqueued() or enqueue_failed()."""

    def enqueued(self, queue: str, token: Any, results: Sequence[Enqueued]) -> None: ...

    def enqueue_failed(self, token: Any, error: Exception) -> None: ...

    def leased(self, queue: str, jobs: Sequence[JobRecord], start_ns: int) -> None: ...

    def settled(
        self,
        items: Sequence[SettledItem],
        results: Sequence[ItemResult | FailResult],
        start_ns: int,
    ) -> None: ...

    def expired(self, queue: str, reclaimed: Sequence[Reclaimed], start_ns: int) -> None: ...


class NoHooks:
    """Telemetry off: jobs without a trace context of their own join the caller's."""

    def describe_call(
        self, operation: str, kind: str, queue: str = "", batch: int | None = None
    ) -> None:
        pass

    def enqueuing(
        self, queue: str, jobs: Sequence[NewJob], caller: TraceContext | None
    ) -> tuple[Sequence[NewJob], Any]:
        if caller is None:
            return jobs, None
        return [j if j.trace.traceparent else _with_trace(j, caller) for j in jobs], None

    def enqueued(self, queue: str, token: Any, results: Sequence[Enqueued]) -> None:
        pass

    def enqueue_failed(self, token: Any, error: Exception) -> None:
        pass

    def leased(self, queue: str, jobs: Sequence[JobRecord], start_ns: int) -> None:
        pass

    def settled(
        self,
        items: Sequence[SettledItem],
        results: Sequence[ItemResult | FailResult],
        start_ns: int,
    ) -> None:
        pass

    def expired(self, queue: str, reclaimed: Sequence[Reclaimed], start_ns: int) -> None:
        pass


def _with_trace(job: NewJob, trace: TraceContext) -> NewJob:
    return dataclasses.replace(job, trace=trace)
