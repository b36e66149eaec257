"""A blocking producer client for synchronous code (scripts, Django, Flask), on gRPC's
sync channel: no event loop involved."""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc

from ._client import DEFAULT_TARGET, ChannelOptions, RetryPolicy, batch_specs
from ._errors import Unavailable, error_from_rpc
from ._models import (
    Backoff,
    Dependencies,
    DependencyFailure,
    EnqueueResult,
    FlowJob,
    IdempotencyMode,
    JobInfo,
    JobState,
    Seconds,
    dependencies,
    flow_request,
    job_info,
    job_spec,
)
from ._trace import Send, grpc_metadata
from .v1 import broker_service_pb2 as pb
from .v1 import broker_service_pb2_grpc as rpc
from .v1 import job_pb2

T = TypeVar("T")


class SyncClient:
    """The blocking twin of Client: enqueue, enqueue_batch, get and cancel.

    with SyncClient("127.0.0.1:50051") as jobs:
        jobs.enqueue("emails", {"to": "a@b.c"})
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        options: ChannelOptions | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.options = options or ChannelOptions()
        self.retry = retry or RetryPolicy.from_service_config(self.options.service_config)
        creds = self.options.credentials
        opts = self.options.grpc_options()
        self.channel = (
            grpc.secure_channel(target, creds, opts)
            if creds
            else grpc.insecure_channel(target, opts)
        )
        self.stub = rpc.BrokerServiceStub(self.channel)

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: Callable[..., T], request: Any, *, idempotent: bool) -> T:
        attempt = 0
        while True:
            try:
                return method(
                    request,
                    timeout=self.options.timeout_s,
                    metadata=grpc_metadata(self.options.metadata),
                )
            except grpc.RpcError as err:
                error = error_from_rpc(err)
            if not (
                idempotent and isinstance(error, Unavailable) and attempt + 1 < self.retry.attempts
            ):
                raise error
            time.sleep(self.retry.delay(attempt, error.retry_after))
            attempt += 1

    def enqueue(
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
        """As Client.enqueue."""
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
            reply = self._call(
                self.stub.Enqueue,
                pb.EnqueueRequest(queue=queue, job=spec),
                idempotent=bool(idempotency_key),
            )
            send.done([reply.job_id])
        return EnqueueResult(reply.job_id, reply.duplicate, JobState(reply.state))

    def enqueue_batch(
        self, queue: str, jobs: Iterable[job_pb2.JobSpec | Any]
    ) -> list[EnqueueResult]:
        """As Client.enqueue_batch."""
        items = list(jobs)
        with Send(queue, len(items)) as send:
            specs = batch_specs(items, send.trace_contexts)
            reply = self._call(
                self.stub.EnqueueBatch,
                pb.EnqueueBatchRequest(queue=queue, jobs=specs),
                idempotent=all(s.idempotency_key for s in specs),
            )
            send.done([r.job_id for r in reply.results])
        return [EnqueueResult(r.job_id, r.duplicate, JobState(r.state)) for r in reply.results]

    def enqueue_flow(self, jobs: Iterable[FlowJob]) -> list[EnqueueResult]:
        """As Client.enqueue_flow."""
        items = list(jobs)
        with Send(items[0].queue if items else "", len(items)) as send:
            request = flow_request(items, send.trace_contexts)
            reply = self._call(
                self.stub.EnqueueFlow,
                request,
                idempotent=bool(items) and all(j.job.idempotency_key for j in request.jobs),
            )
            send.done([r.job_id for r in reply.results])
        return [EnqueueResult(r.job_id, r.duplicate, JobState(r.state)) for r in reply.results]

    def get_dependencies(self, job_id: str) -> Dependencies:
        """As Client.get_dependencies."""
        request = pb.GetDependenciesRequest(job_id=job_id)
        return dependencies(self._call(self.stub.GetDependencies, request, idempotent=True))

    def get(self, job_id: str) -> JobInfo:
        # GetJob and CancelJob are retried by gRPC, as the service config says.
        reply = self._call(self.stub.GetJob, pb.GetJobRequest(job_id=job_id), idempotent=False)
        return job_info(reply.job)

    def cancel(self, job_id: str) -> JobState:
        request = pb.CancelJobRequest(job_id=job_id)
        reply = self._call(self.stub.CancelJob, request, idempotent=False)
        return JobState(reply.state)
