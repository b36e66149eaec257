"""The asyncio producer client: enqueue, inspect, cancel and watch jobs."""

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import grpc

from . import _service_config as service_config
from ._errors import JobwireError, Unavailable, error_from_rpc
from ._models import (
    Backoff,
    Dependencies,
    DependencyFailure,
    EnqueueResult,
    FlowJob,
    IdempotencyMode,
    JobEvent,
    JobInfo,
    JobState,
    Seconds,
    dependencies,
    flow_request,
    job_event,
    job_info,
    job_spec,
)
from ._trace import Send, grpc_metadata
from .v1 import broker_service_pb2 as pb
from .v1 import broker_service_pb2_grpc as rpc
from .v1 import job_pb2

T = TypeVar("T")
DEFAULT_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class RetryPolicy:
    """Client-side retries of UNAVAILABLE, for what the service config cannot say: an
    Enqueue whose jobs all carry an idempotency key, and reopening a watch. Exponential
    backoff with full jitter, or the broker's RetryInfo delay when it gives one. The
    defaults are GetJob's policy in the service config; gRPC itself retries GetJob,
    CancelJob and heartbeats as that config says."""

    attempts: int = 5
    initial_s: float = 0.1
    max_s: float = 2.0

    @classmethod
    def from_service_config(cls, config: str | None = None) -> "RetryPolicy":
        policy = service_config.retry_policy("GetJob", config)
        if policy is None:
            return cls(attempts=1)
        return cls(
            attempts=int(policy["maxAttempts"]),
            initial_s=service_config.seconds(policy["initialBackoff"]),
            max_s=service_config.seconds(policy["maxBackoff"]),
        )

    def delay(self, attempt: int, hint: float | None) -> float:
        if hint is not None:
            return hint
        return random.uniform(0, min(self.max_s, self.initial_s * 2**attempt))


@dataclass(frozen=True)
class ChannelOptions:
    """How to reach the broker: TLS credentials, metadata sent with every call (e.g. an
    auth token), keepalive, and the default per-call deadline."""

    credentials: grpc.ChannelCredentials | None = None
    metadata: Sequence[tuple[str, str]] = ()
    timeout_s: float = 30.0
    keepalive_s: float = 30.0
    max_message_bytes: int = 64 << 20
    # A whole gRPC service config (JSON); None: the one shipped with the protos.
    service_config: str | None = None

    def grpc_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.service_config", self.service_config or service_config.document()),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            # Reconnect to a restarted broker within seconds, not gRPC's default 2 min.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


def batch_specs(
    jobs: Sequence[job_pb2.JobSpec | Any], traces: Sequence[Mapping[str, str]]
) -> list[job_pb2.JobSpec]:
    """JobSpecs for a batch: payloads are encoded, and each job without a trace context
    of its own gets its creation span's."""
    specs = []
    for job, trace in zip(jobs, traces, strict=True):
        if isinstance(job, job_pb2.JobSpec):
            if trace and not job.HasField("trace_context"):
                job = job_spec_with_trace(job, trace)
            specs.append(job)
        else:
            specs.append(job_spec(job, trace=trace))
    return specs


def job_spec_with_trace(spec: job_pb2.JobSpec, trace: Mapping[str, str]) -> job_pb2.JobSpec:
    out = job_pb2.JobSpec()
    out.CopyFrom(spec)
    out.trace_context.traceparent = trace.get("traceparent", "")
    out.trace_context.tracestate = trace.get("tracestate", "")
    out.trace_context.baggage = trace.get("baggage", "")
    return out


def open_channel(target: str, options: ChannelOptions) -> grpc.aio.Channel:
    if options.credentials is not None:
        return grpc.aio.secure_channel(target, options.credentials, options.grpc_options())
    return grpc.aio.insecure_channel(target, options.grpc_options())


class Client:
    """Talks to a Jobwire broker. Use as `async with Client(target) as client:`.

    Every call raises a JobwireError subclass on failure (InvalidArgument, NotFound,
    LeaseLost, FailedPrecondition, Unavailable)."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        options: ChannelOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.target = target
        self.options = options or ChannelOptions()
        self.retry = retry or RetryPolicy.from_service_config(self.options.service_config)
        self.channel = open_channel(target, self.options)
        self.stub = rpc.BrokerServiceStub(self.channel)

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close(None)

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        idempotent: bool,
        timeout_s: float | None = None,
    ) -> T:
        """One RPC with the client's metadata and deadline; UNAVAILABLE is retried
        only when the call is idempotent."""
        attempt = 0
        while True:
            try:
                return await method(
                    request,
                    timeout=timeout_s or self.options.timeout_s,
                    metadata=grpc_metadata(self.options.metadata),
                )
            except grpc.RpcError as err:
                error = error_from_rpc(err)
            if not (
                idempotent and isinstance(error, Unavailable) and attempt + 1 < self.retry.attempts
            ):
                raise error
            await asyncio.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1

    async def enqueue(
        self,
        queue: str,
        payload: Any,
        *,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        priority: int = 0,
        delay: Seconds | None = None,
        run_at: datetime | None = None,
        max_attempts: int = 0,
        backoff: Backoff | None = None,
        lease_duration: Seconds | None = None,
        execution_timeout: Seconds | None = None,
        idempotency_key: str | None = None,
        idempotency_window: Seconds | None = None,
        idempotency_mode: IdempotencyMode | None = None,
        start_deadline: datetime | None = None,
        start_within: Seconds | None = None,
        depends_on: Sequence[str] = (),
        on_dependency_failure: DependencyFailure | None = None,
        concurrency_key: str | None = None,
        concurrency_limit: int = 0,
    ) -> EnqueueResult:
        """Adds a job. `payload`: bytes as they are, str as UTF-8 text, anything else as
        JSON. Retried on UNAVAILABLE only with an idempotency key (else a retry could
        create a second job)."""
        with Send(queue, 1) as send:
            spec = job_spec(
                payload,
                content_type=content_type,
                headers=headers,
                priority=priority,
                delay=delay,
                run_at=run_at,
                max_attempts=max_attempts,
                backoff=backoff,
                lease_duration=lease_duration,
                execution_timeout=execution_timeout,
                idempotency_key=idempotency_key,
                idempotency_window=idempotency_window,
                concurrency_key=concurrency_key,
                concurrency_limit=concurrency_limit,
                trace=send.trace_contexts[0],
                idempotency_mode=idempotency_mode,
                start_deadline=start_deadline,
                start_within=start_within,
                depends_on=depends_on,
                on_dependency_failure=on_dependency_failure,
            )
            reply = await self.call(
                self.stub.Enqueue,
                pb.EnqueueRequest(queue=queue, job=spec),
                idempotent=bool(idempotency_key),
            )
            send.done([reply.job_id])
        return EnqueueResult(reply.job_id, reply.duplicate, JobState(reply.state))

    async def enqueue_batch(
        self, queue: str, jobs: Iterable[job_pb2.JobSpec | Any]
    ) -> list[EnqueueResult]:
        """Adds up to 1000 jobs to one queue, all or none. Items are payloads (encoded as
        in enqueue) or JobSpecs built with `jobwire.job_spec(...)` for per-job options."""
        items = list(jobs)
        with Send(queue, len(items)) as send:
            specs = batch_specs(items, send.trace_contexts)
            reply = await self.call(
                self.stub.EnqueueBatch,
                pb.EnqueueBatchRequest(queue=queue, jobs=specs),
                idempotent=all(s.idempotency_key for s in specs),
            )
            send.done([r.job_id for r in reply.results])
        return [EnqueueResult(r.job_id, r.duplicate, JobState(r.state)) for r in reply.results]

    async def enqueue_flow(self, jobs: Iterable[FlowJob]) -> list[EnqueueResult]:
        """Adds up to 1000 jobs, in any queues, that wait for each other by ref: all or
        none, in one call. Results in the order given. Not retried (a retry could
        create a second flow) unless every job carries an idempotency key."""
        items = list(jobs)
        with Send(items[0].queue if items else "", len(items)) as send:
            request = flow_request(items, send.trace_contexts)
            reply = await self.call(
                self.stub.EnqueueFlow,
                request,
                idempotent=bool(items) and all(j.job.idempotency_key for j in request.jobs),
            )
            send.done([r.job_id for r in reply.results])
        return [EnqueueResult(r.job_id, r.duplicate, JobState(r.state)) for r in reply.results]

    async def get_dependencies(self, job_id: str) -> Dependencies:
        """The jobs `job_id` depends on, with their states and results."""
        request = pb.GetDependenciesRequest(job_id=job_id)
        return dependencies(await self.call(self.stub.GetDependencies, request, idempotent=True))

    # GetJob and CancelJob are retried by gRPC itself, as the service config says.
    async def get(self, job_id: str) -> JobInfo:
        reply = await self.call(
            self.stub.GetJob, pb.GetJobRequest(job_id=job_id), idempotent=False
        )  # gRPC retries it (service config)
        return job_info(reply.job)

    async def cancel(self, job_id: str) -> JobState:
        """Cancels a pending job at once, or asks the worker of an active one to stop.
        Returns CANCELLED or ACTIVE."""
        reply = await self.call(
            self.stub.CancelJob,
            pb.CancelJobRequest(job_id=job_id),
            idempotent=False,  # gRPC retries it
        )
        return JobState(reply.state)

    async def watch(self, job_id: str) -> AsyncIterator[JobEvent]:
        """The job's current state, then every change in order, until it ends. A dropped
        stream is resumed from the last event seen, so nothing is missed or repeated."""
        last = ""
        attempt = 0
        while True:
            stream = self.stub.StreamProgress(
                pb.StreamProgressRequest(job_id=job_id, after_event_id=last),
                metadata=self.options.metadata,
            )
            try:
                async for message in stream:
                    attempt = 0
                    event = job_event(message)
                    last = event.id
                    yield event
                    if event.state.terminal and event.kind in ("snapshot", "state"):
                        return
                return
            except grpc.RpcError as err:
                error: JobwireError = error_from_rpc(err)
            finally:
                stream.cancel()
            if not isinstance(error, Unavailable) or attempt + 1 >= self.retry.attempts * 4:
                raise error
            await asyncio.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1
