"""BrokerService: validates each request, calls the domain, maps the answer to protobuf."""

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc

from ..domain.broker import Broker, SettleAnswer, Settlement, only
from ..domain.ids import job_id
from ..domain.limits import DEFAULT_REPLY_BYTES, Defaults, Limits
from ..domain.model import FailResult, JobRecord, ReleaseItem, TraceContext
from . import responses as out
from .errors import item_status, streaming, unary
from .flows import flow_jobs
from .requests import (
    MAX_BAGGAGE_BYTES,
    MAX_TRACEPARENT_BYTES,
    MAX_TRACESTATE_BYTES,
    Parser,
    valid_traceparent,
)

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]
REPLY_FRAMING_BYTES = 1024
# A long-poll returns this long before the caller's deadline, so the empty reply
# arrives in time on a loaded machine: a tenth of the time left, within these bounds.
DEADLINE_MARGIN_MIN_S = 0.25
DEADLINE_MARGIN_MAX_S = 1.0


def _wait_s(wait_ms: int, context: Context) -> float:
    """How long a Lease may wait: what it asked, ending a margin before its deadline."""
    wait_s = wait_ms / 1000
    remaining = context.time_remaining()
    if remaining is not None:
        margin = min(max(remaining / 10, DEADLINE_MARGIN_MIN_S), DEADLINE_MARGIN_MAX_S)
        wait_s = min(wait_s, remaining - margin)
    return wait_s


TRACE_LIMITS = {
    "traceparent": MAX_TRACEPARENT_BYTES,
    "tracestate": MAX_TRACESTATE_BYTES,
    "baggage": MAX_BAGGAGE_BYTES,
}


def caller_trace(context: Context) -> TraceContext | None:
    """The W3C context in the call's metadata, for producers that put it there rather
    than in JobSpec.trace_context (plain stubs, grpcurl). Oversized values are ignored:
    metadata is not the request, so it is not rejected."""
    found: dict[str, str] = {}
    for key, value in context.invocation_metadata() or ():
        limit = TRACE_LIMITS.get(key)
        if limit and key not in found and isinstance(value, str) and len(value) <= limit:
            found[key] = value
    if not valid_traceparent(found.get("traceparent", "")):
        return None
    return TraceContext(found["traceparent"], found.get("tracestate", ""), found.get("baggage", ""))


class BrokerServicer(rpc.BrokerServiceServicer):
    def __init__(
        self,
        broker: Broker,
        limits: Limits,
        defaults: Defaults,
        reply_limit: int = DEFAULT_REPLY_BYTES,
    ) -> None:
        self.broker = broker
        self.limits = limits
        self.defaults = defaults
        # The broker's send limit, less room for the reply's own framing.
        self.reply_limit = reply_limit - REPLY_FRAMING_BYTES

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)

    @unary
    async def Enqueue(self, request: pb.EnqueueRequest, context: Context) -> pb.EnqueueResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        if not request.HasField("job"):
            p.bad("job", "is required")
        job = p.new_job("job", request.job)
        p.done()
        self.broker.hooks.describe_call("enqueue", "send", queue)
        caller = None if job.trace.traceparent else caller_trace(context)
        (result,) = await self.broker.enqueue(queue, [job], caller)
        return pb.EnqueueResponse(
            job_id=job_id(queue, result.seq),
            duplicate=result.duplicate,
            state=out.STATES[result.state],
        )

    @unary
    async def EnqueueBatch(
        self, request: pb.EnqueueBatchRequest, context: Context
    ) -> pb.EnqueueBatchResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        p.batch("jobs", len(request.jobs))
        jobs = [p.new_job(f"jobs[{i}]", spec) for i, spec in enumerate(request.jobs)]
        p.done()
        self.broker.hooks.describe_call("enqueue", "send", queue, len(jobs))
        caller = None
        if not all(j.trace.traceparent for j in jobs):
            caller = caller_trace(context)
        results = await self.broker.enqueue(queue, jobs, caller, field="jobs")
        return pb.EnqueueBatchResponse(
            results=[
                pb.EnqueueResponse(
                    job_id=job_id(queue, r.seq), duplicate=r.duplicate, state=out.STATES[r.state]
                )
                for r in results
            ]
        )

    @unary
    async def Lease(self, request: pb.LeaseRequest, context: Context) -> pb.LeaseResponse:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        p.in_range("max_jobs", request.max_jobs, 0, self.limits.max_batch)
        wait_ms = 0
        if request.HasField("wait"):
            wait_ms = p.duration_ms("wait", request.wait, 0, self.limits.max_wait_ms)
        p.size("worker_id", request.worker_id, self.limits.max_key_bytes)
        p.in_range("max_response_bytes", request.max_response_bytes, 0, 2**31 - 1)
        p.done()
        max_bytes = min(request.max_response_bytes or DEFAULT_REPLY_BYTES, self.reply_limit)
        leased = await self.broker.lease(
            queue, request.max_jobs or 1, _wait_s(wait_ms, context), max_bytes, request.worker_id
        )
        jobs = leased.jobs
        batch = len(jobs) if request.max_jobs > 1 else None
        self.broker.hooks.describe_call("lease", "receive", queue, batch)
        response = pb.LeaseResponse(jobs=[out.leased_job(j) for j in jobs])
        if leased.retry_after_ms is not None and not jobs:
            response.retry_after.CopyFrom(out.duration(leased.retry_after_ms))
        await self._fit(queue, response, jobs, max_bytes)
        return response

    async def _fit(
        self, queue: str, response: pb.LeaseResponse, jobs: list[JobRecord], max_bytes: int
    ) -> None:
        """Drops (and hands back) the last jobs while the reply is over max_bytes. The
        lease script's estimate is an upper bound, so this only guards against a wrong
        estimate: a reply over the caller's limit would strand every job in it. (A reply
        lost after it left, say with a worker that died, cannot be seen here: its jobs
        come back when their leases expire, as for any crashed worker.)"""
        extra: list[JobRecord] = []
        while len(response.jobs) > 1 and response.ByteSize() > max_bytes:
            response.jobs.pop()
            extra.append(jobs.pop())
        if extra:
            log.warning("lease reply over %d bytes; handing back %d jobs", max_bytes, len(extra))
            await self.broker.release_leased(queue, extra)

    @unary
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        p = self._parser()
        item = p.heartbeat("", request)
        p.done()
        result = only(await self.broker.heartbeat([item]))
        return pb.HeartbeatResponse(
            lease_expire_time=out.timestamp(result.lease_until_ms),
            cancel_requested=result.cancel_requested,
        )

    @unary
    async def HeartbeatBatch(
        self, request: pb.HeartbeatBatchRequest, context: Context
    ) -> pb.HeartbeatBatchResponse:
        p = self._parser()
        p.batch("heartbeats", len(request.heartbeats))
        items = [p.heartbeat(f"heartbeats[{i}].", r) for i, r in enumerate(request.heartbeats)]
        p.done()
        response = pb.HeartbeatBatchResponse()
        for answer in await self.broker.heartbeat(items):
            item = response.results.add(
                status=item_status(answer.error),
                cancel_requested=answer.result.cancel_requested,
            )
            if answer.error is None:
                item.lease_expire_time.CopyFrom(out.timestamp(answer.result.lease_until_ms))
        return response

    @unary
    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        p = self._parser()
        item = p.complete("", request)
        p.done()
        self.broker.hooks.describe_call("complete", "settle", item[0])
        only(await self.broker.complete([item]))
        return pb.CompleteResponse()

    @unary
    async def Fail(self, request: pb.FailRequest, context: Context) -> pb.FailResponse:
        p = self._parser()
        queue, item = p.fail_or_release("", request)
        p.done()
        if isinstance(item, ReleaseItem):
            self.broker.hooks.describe_call("release", "settle", queue)
            return out.fail_response(only(await self.broker.release([(queue, item)])))
        self.broker.hooks.describe_call("fail", "settle", queue)
        return out.fail_response(only(await self.broker.fail([(queue, item)])))

    @unary
    async def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: Context
    ) -> pb.ReleaseLeaseResponse:
        p = self._parser()
        item = p.release("", request)
        p.done()
        self.broker.hooks.describe_call("release", "settle", item[0])
        return out.release_response(only(await self.broker.release([item])))

    @unary
    async def SettleBatch(
        self, request: pb.SettleBatchRequest, context: Context
    ) -> pb.SettleBatchResponse:
        p = self._parser()
        p.batch("settlements", len(request.settlements))
        items = []
        for i, s in enumerate(request.settlements):
            field = f"settlements[{i}]"
            kind = s.WhichOneof("outcome")
            if kind == "complete":
                queue, complete = p.complete(f"{field}.complete.", s.complete)
                items.append(Settlement(queue, complete=complete))
            elif kind == "fail":
                queue, failed = p.fail_or_release(f"{field}.fail.", s.fail)
                if isinstance(failed, ReleaseItem):
                    items.append(Settlement(queue, release=failed))
                else:
                    items.append(Settlement(queue, fail=failed))
            elif kind == "release":
                queue, release = p.release(f"{field}.release.", s.release)
                items.append(Settlement(queue, release=release))
            else:
                p.bad(field, "must set complete, fail or release")
        p.done()
        self.broker.hooks.describe_call("settle", "settle", batch=len(items))
        answers = await self.broker.settle(items)
        return pb.SettleBatchResponse(
            results=[_settlement(s, a) for s, a in zip(items, answers, strict=True)]
        )

    @streaming
    async def StreamProgress(
        self, request: pb.StreamProgressRequest, context: Context
    ) -> AsyncIterator[pb.StreamProgressResponse]:
        p = self._parser()
        queue, seq = p.job_id("job_id", request.job_id)
        after = p.event_id("after_event_id", request.after_event_id)
        p.done()
        async for event in self.broker.watch(queue, seq, after):
            yield out.watch_event(event, queue, request.job_id)

    @unary
    async def GetJob(self, request: pb.GetJobRequest, context: Context) -> pb.GetJobResponse:
        p = self._parser()
        queue, seq = p.job_id("job_id", request.job_id)
        p.done()
        return pb.GetJobResponse(job=out.job(await self.broker.get(queue, seq)))

    @unary
    async def CancelJob(
        self, request: pb.CancelJobRequest, context: Context
    ) -> pb.CancelJobResponse:
        p = self._parser()
        queue, seq = p.job_id("job_id", request.job_id)
        p.done()
        state = await self.broker.cancel(queue, seq)
        return pb.CancelJobResponse(state=out.STATES[state])

    @unary
    async def EnqueueFlow(
        self, request: pb.EnqueueFlowRequest, context: Context
    ) -> pb.EnqueueFlowResponse:
        p = self._parser()
        jobs = flow_jobs(p, request)
        p.done()
        self.broker.hooks.describe_call("enqueue", "send", jobs[0].queue, len(jobs))
        caller = None
        if not all(j.job.trace.traceparent for j in jobs):
            caller = caller_trace(context)
        results = await self.broker.enqueue_flow(jobs, caller)
        return pb.EnqueueFlowResponse(
            results=[
                pb.EnqueueResponse(
                    job_id=job_id(j.queue, r.seq), duplicate=r.duplicate, state=out.STATES[r.state]
                )
                for j, r in zip(jobs, results, strict=True)
            ]
        )

    @unary
    async def GetDependencies(
        self, request: pb.GetDependenciesRequest, context: Context
    ) -> pb.GetDependenciesResponse:
        p = self._parser()
        queue, seq = p.job_id("job_id", request.job_id)
        p.done()
        jobs, missing = await self.broker.dependencies(queue, seq)
        return pb.GetDependenciesResponse(jobs=[out.job(j) for j in jobs], missing_job_ids=missing)


def _settlement(item: Settlement, answer: SettleAnswer) -> pb.SettlementResult:
    result = pb.SettlementResult(status=item_status(answer.error))
    if answer.error is None and isinstance(answer.result, FailResult):
        if item.release is not None:
            result.release.CopyFrom(out.release_response(answer.result))
        else:
            result.fail.CopyFrom(out.fail_response(answer.result))
    return result
