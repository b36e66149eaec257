"""BrokerService: validates each request, calls the domain, maps the answer to protobuf."""

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc

from ..domain.broker import Broker, Settlement, SettleResult
from ..domain.errors import Reason, lease_lost, not_found
from ..domain.ids import job_id
from ..domain.limits import Defaults, Limits
from ..store import DEFAULT_REPLY_BYTES, Code, FailResult, ItemResult, JobRecord, TraceContext
from . import responses as out
from .errors import streaming, unary
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


ITEM_CODES = {
    Code.OK: (grpc.StatusCode.OK.value[0], ""),
    Code.NOT_FOUND: (grpc.StatusCode.NOT_FOUND.value[0], Reason.JOB_NOT_FOUND),
    Code.LEASE_LOST: (grpc.StatusCode.FAILED_PRECONDITION.value[0], Reason.LEASE_LOST),
}


def _item_status(code: int, reason: str) -> pb.ItemStatus:
    grpc_code, stable = ITEM_CODES[Code(code)]
    return pb.ItemStatus(code=grpc_code, reason=stable, message=reason)


def _raise_item(job: str, code: int, reason: str) -> None:
    if code == Code.NOT_FOUND:
        raise not_found(job)
    if code == Code.LEASE_LOST:
        raise lease_lost(job, reason)


def _fail_response(r: FailResult) -> pb.FailResponse:
    response = pb.FailResponse()
    if r.state is not None:
        response.state = out.STATES[r.state]
    if r.due_ms:
        response.retry_time.CopyFrom(out.timestamp(r.due_ms))
    return response


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
        self.broker.instruments.describe_call("enqueue", "send", queue)
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
        self.broker.instruments.describe_call("enqueue", "send", queue, len(jobs))
        caller = None
        if not all(j.trace.traceparent for j in jobs):
            caller = caller_trace(context)
        results = await self.broker.enqueue(queue, jobs, caller)
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
        jobs = await self.broker.lease(
            queue, request.max_jobs or 1, _wait_s(wait_ms, context), max_bytes
        )
        batch = len(jobs) if request.max_jobs > 1 else None
        self.broker.instruments.describe_call("lease", "receive", queue, batch)
        response = pb.LeaseResponse(jobs=[out.leased_job(j) for j in jobs])
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
            await self.broker.release(queue, extra)

    @unary
    async def Heartbeat(
        self, request: pb.HeartbeatRequest, context: Context
    ) -> pb.HeartbeatResponse:
        p = self._parser()
        item = p.heartbeat("", request)
        p.done()
        (result,) = await self.broker.heartbeat([item])
        _raise_item(request.job_id, result.code, result.reason)
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
        results = await self.broker.heartbeat(items)
        response = pb.HeartbeatBatchResponse()
        for r in results:
            item = response.results.add(
                status=_item_status(r.code, r.reason), cancel_requested=r.cancel_requested
            )
            if r.code == Code.OK:
                item.lease_expire_time.CopyFrom(out.timestamp(r.lease_until_ms))
        return response

    @unary
    async def Complete(self, request: pb.CompleteRequest, context: Context) -> pb.CompleteResponse:
        p = self._parser()
        item = p.complete("", request)
        p.done()
        self.broker.instruments.describe_call("complete", "settle", item[0])
        (result,) = await self.broker.complete([item])
        _raise_item(request.job_id, result.code, result.reason)
        return pb.CompleteResponse()

    @unary
    async def Fail(self, request: pb.FailRequest, context: Context) -> pb.FailResponse:
        p = self._parser()
        item = p.fail("", request)
        p.done()
        operation = "release" if request.release else "fail"
        self.broker.instruments.describe_call(operation, "settle", item[0])
        (result,) = await self.broker.fail([item])
        _raise_item(request.job_id, result.code, result.reason)
        return _fail_response(result)

    @unary
    async def SettleBatch(
        self, request: pb.SettleBatchRequest, context: Context
    ) -> pb.SettleBatchResponse:
        p = self._parser()
        p.batch("settlements", len(request.settlements))
        items = []
        for i, s in enumerate(request.settlements):
            field = f"settlements[{i}]"
            if s.HasField("complete"):
                queue, complete = p.complete(f"{field}.complete.", s.complete)
                items.append(Settlement(queue, complete=complete))
            elif s.HasField("fail"):
                queue, fail = p.fail(f"{field}.fail.", s.fail)
                items.append(Settlement(queue, fail=fail))
            else:
                p.bad(field, "must set complete or fail")
        p.done()
        self.broker.instruments.describe_call("settle", "settle", batch=len(items))
        results = await self.broker.settle(items)
        return pb.SettleBatchResponse(results=[self._settlement(r) for r in results])

    @staticmethod
    def _settlement(r: SettleResult) -> pb.SettlementResult:
        result = pb.SettlementResult(status=_item_status(r.code, r.reason))
        if isinstance(r, FailResult) and r.code == Code.OK:
            result.fail.CopyFrom(_fail_response(r))
        assert isinstance(r, ItemResult | FailResult)
        return result

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
