"""AdminService's WatchQueue and ListWorkers: validation, and domain values to protobuf
(see api/admin.py, which combines the parts)."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
from jobwire.v1 import admin_service_pb2 as pb
from jobwire.v1 import job_pb2

from ..domain.admin import AdminContext
from ..domain.ids import job_id
from ..domain.limits import Defaults, Limits
from ..domain.queue_watch import FROM_OLDEST, WatchedEvent, watch_queue
from ..domain.workers import Worker, WorkerState, list_workers
from . import responses as out
from .errors import streaming, unary
from .requests import Parser, valid_event_id

Context = grpc.aio.ServicerContext[Any, Any]
PREFIX = "QUEUE_EVENT_KIND_"
# Stored kinds are QueueEventKind names in lower case, without the prefix (lib.lua).
KINDS = {
    name.removeprefix(PREFIX).lower(): value
    for name, value in pb.QueueEventKind.items()
    if name != "QUEUE_EVENT_KIND_UNSPECIFIED"
}
WORKER_STATES = {
    WorkerState.ACTIVE: pb.WORKER_STATE_ACTIVE,
    WorkerState.IDLE: pb.WORKER_STATE_IDLE,
    WorkerState.GONE: pb.WORKER_STATE_GONE,
}
EVENT_ID_RULE = "must be empty, 0, or an event_id received from WatchQueue"


class WatchRpcs:
    ctx: AdminContext
    limits: Limits
    defaults: Defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)

    @streaming
    async def WatchQueue(
        self, request: pb.WatchQueueRequest, context: Context
    ) -> AsyncIterator[pb.WatchQueueResponse]:
        p = self._parser()
        queue = p.queue("queue", request.queue)
        after = request.after_event_id
        if after not in ("", FROM_OLDEST) and not valid_event_id(after):
            p.bad("after_event_id", EVENT_ID_RULE)
        p.done()
        async for watched in watch_queue(self.ctx, queue, after):
            yield queue_event(queue, watched)

    @unary
    async def ListWorkers(
        self, request: pb.ListWorkersRequest, context: Context
    ) -> pb.ListWorkersResponse:
        p = self._parser()
        if request.queue:  # empty: every queue
            p.queue("queue", request.queue)
        p.done()
        workers = await list_workers(self.ctx, request.queue, request.include_gone)
        return pb.ListWorkersResponse(workers=[worker(w) for w in workers])


def queue_event(queue: str, watched: WatchedEvent) -> pb.WatchQueueResponse:
    e = watched.event
    response = pb.WatchQueueResponse(
        event_id=e.id,
        kind=KINDS.get(e.kind, pb.QUEUE_EVENT_KIND_UNSPECIFIED),
        job_id=job_id(queue, e.job) if e.job else "",
        state=out.STATES[e.state] if e.state else job_pb2.JOB_STATE_UNSPECIFIED,
        attempt=e.attempt,
        time=out.timestamp(e.time_ms),
        gap=watched.gap,
    )
    if e.progress:
        response.progress.CopyFrom(out.progress(e.progress))
    if e.error:
        response.error.CopyFrom(out.error(e.error))
    return response


def worker(w: Worker) -> pb.Worker:
    response = pb.Worker(
        worker_id=w.worker_id,
        queues=w.queues,
        in_flight=w.in_flight,
        state=WORKER_STATES[w.state],
    )
    if w.last_lease_ms:
        response.last_lease_time.CopyFrom(out.timestamp(w.last_lease_ms))
    if w.last_heartbeat_ms:
        response.last_heartbeat_time.CopyFrom(out.timestamp(w.last_heartbeat_ms))
    return response
