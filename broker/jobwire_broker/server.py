"""Wires a broker replica: Redis client, store, gRPC server with health and reflection,
the maintenance loop, a Redis health monitor, and telemetry when it is configured."""

import asyncio
import contextlib
import logging
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from jobwire.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
)
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc

from . import queue_file, schedule_file
from .api import reflection, undecodable
from .api.admin import AdminServicer
from .api.durations import OperationDurations
from .api.health import HealthServicer
from .api.schedules import ScheduleServicer
from .api.servicer import BrokerServicer
from .api.streams import StreamSteps
from .config import Settings
from .domain.admin import AdminContext
from .domain.broker import Broker
from .domain.hooks import Hooks, NoHooks
from .domain.instruments import Instruments
from .domain.maintenance import Maintenance
from .domain.schedules import ScheduleTicker
from .durability import warn_if_not_durable
from .embedded import EmbeddedValkey
from .store import Store, StoreUnavailable
from .store.connection import redis_client
from .store.keys import registry_channel
from .store.notify import Notifier, cancel_and_wait
from .telemetry import Telemetry

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BrokerService"].full_name
ADMIN_SERVICE_NAME = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
SCHEDULE_SERVICE_NAME = schedule_service_pb2.DESCRIPTOR.services_by_name[
    "ScheduleService"
].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BrokerApp:
    """One broker replica. `await start()` returns the bound port."""

    def __init__(self, settings: Settings, telemetry: Telemetry | None = None) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        self.instruments = Instruments(
            self.telemetry.tracer_provider, self.telemetry.meter_provider
        )
        self.embedded: EmbeddedValkey | None = None
        self.health = HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0

    async def start(self) -> int:
        url = self.settings.redis_url
        if not url:
            self.embedded = EmbeddedValkey(
                self.settings.data_dir,
                self.settings.embedded_restart_delay_s,
                appendfsync=self.settings.embedded_fsync,
            )
            url = await self.embedded.start()  # before gRPC starts threads: it forks
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.settings.max_message_bytes),
                ("grpc.max_send_message_length", self.settings.max_message_bytes),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ],
            interceptors=self._interceptors() or None,
        )
        self.redis = redis_client(
            url, self.settings.redis_max_connections, self.settings.redis_timeout_s
        )
        self.store = Store(self.redis, self.settings.key_prefix, defaults=self.settings.defaults)
        self.notifier = Notifier(self.redis)
        self.notifier.start()
        self.broker = Broker(self.store, self.notifier, self._hooks())
        self.instruments.observe_depth(self.store)
        servicer = BrokerServicer(
            self.broker,
            self.settings.limits,
            self.settings.defaults,
            reply_limit=self.settings.max_message_bytes,
        )
        undecodable.register(rpc.add_BrokerServiceServicer_to_server, servicer, self.server)
        self.admin = AdminContext(
            self.store,
            self.notifier,
            self.broker,
            self.settings.defaults,
            self.settings.maintenance.retention,
        )
        undecodable.register(
            admin_service_pb2_grpc.add_AdminServiceServicer_to_server,
            AdminServicer(self.admin, self.settings.limits, self.settings.defaults),
            self.server,
        )
        undecodable.register(
            schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server,
            ScheduleServicer(self.admin, self.settings.limits, self.settings.defaults),
            self.server,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_reflection(
            self.server,
            (SERVICE_NAME, ADMIN_SERVICE_NAME, SCHEDULE_SERVICE_NAME, health.SERVICE_NAME),
        )
        await self.notifier.listen(
            registry_channel(self.settings.key_prefix),
            lambda queue: self.store.forget(queue.decode()),
            within_s=0.5,
        )
        self.port = self.server.add_insecure_port(self.settings.listen)
        # Health must say something from the first call on (unset reads as NOT_FOUND).
        serving = await self._redis_ok()
        if serving:
            await self.store.detect_cluster()
        if serving and self.embedded is None:  # ours is configured durable; check theirs
            await warn_if_not_durable(self.redis)
        later = await self._apply_queue_file(serving)
        later += await self._apply_schedules_file(serving)
        await self._set_health(SERVING if serving else NOT_SERVING)
        await self.server.start()
        maintenance = Maintenance(self.store, self.settings.maintenance, self._hooks())
        self._tasks = [
            asyncio.create_task(maintenance.run(self.broker.closing), name="maintenance"),
            asyncio.create_task(
                ScheduleTicker(self.store).run(self.broker.closing), name="schedules"
            ),
            asyncio.create_task(self._monitor_redis(serving), name="redis-health"),
            *later,
        ]
        log.info("jobwire broker listening on %s (port %d)", self.settings.listen, self.port)
        return self.port

    async def _apply_queue_file(self, serving: bool) -> "list[asyncio.Task[None]]":
        """Applies --queues before serving; with Redis down, as soon as it is back."""
        s, path = self.settings, self.settings.queues_file
        if path is None:
            return []
        updates = queue_file.load(path, s.limits, s.defaults)
        if serving:
            await queue_file.apply(self.admin, updates)
            return []
        waiting = queue_file.apply_when_reachable(
            self.admin, updates, self.broker.closing, s.health_interval_s
        )
        return [asyncio.create_task(waiting, name="queue-file")]

    async def _apply_schedules_file(self, serving: bool) -> "list[asyncio.Task[None]]":
        """Applies --schedules before serving; with Redis down, as soon as it is back."""
        s, path = self.settings, self.settings.schedules_file
        if path is None:
            return []
        specs = schedule_file.load(path, s.limits, s.defaults)
        if serving:
            await schedule_file.apply(self.store, specs)
            return []
        waiting = schedule_file.apply_when_reachable(
            self.store, specs, self.broker.closing, s.health_interval_s
        )
        return [asyncio.create_task(waiting, name="schedules-file")]

    def _hooks(self) -> Hooks:
        """Per-job telemetry when tracing or metrics are on; else hooks that do nothing."""
        ins = self.instruments
        return ins if ins.tracing or ins.metrics else NoHooks()

    def _interceptors(self) -> "list[grpc.aio.ServerInterceptor[Any, Any]]":
        """gRPC server spans (parented to the caller's metadata) and call durations, only
        when telemetry is on: off, a call pays nothing for them."""
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = []
        if self.telemetry.tracer_provider is not None:
            from opentelemetry.instrumentation.grpc import aio_server_interceptor
            from opentelemetry.instrumentation.grpc.filters import any_of, negate, service_name

            # Health probes and reflection would drown the job traces.
            quiet = any_of(
                *(service_name(s) for s in (health.SERVICE_NAME, *reflection.SERVICE_NAMES))
            )
            interceptors.append(StreamSteps())  # first: it wraps what the next one returns
            interceptors.append(
                aio_server_interceptor(  # type: ignore[no-untyped-call]
                    self.telemetry.tracer_provider, filter_=negate(quiet)
                )
            )
        if self.instruments.metrics:
            interceptors.append(
                OperationDurations(self.instruments.operation_duration, SERVICE_NAME)
            )
        return interceptors

    async def _set_health(self, status: "health_pb2.HealthCheckResponse.ServingStatus") -> None:
        for service in ("", SERVICE_NAME, SCHEDULE_SERVICE_NAME):
            await self.health.set(service, status)

    async def _redis_ok(self) -> bool:
        try:
            async with asyncio.timeout(self.settings.health_interval_s * 2):
                await self.store.ping()
        except (StoreUnavailable, TimeoutError):
            return False
        return True

    async def _monitor_redis(self, serving: bool) -> None:
        """NOT_SERVING while Redis is unreachable. On recovery, drops pooled connections
        so no call trips over a socket to the old server."""
        while not self.broker.closing.is_set():
            await _sleep_unless(self.broker.closing, self.settings.health_interval_s)
            ok = await self._redis_ok()
            if ok != serving:
                if ok and serving is False:
                    await self.redis.connection_pool.disconnect(inuse_connections=False)
                log.log(
                    logging.INFO if ok else logging.ERROR,
                    "redis %s",
                    "reachable" if ok else "unreachable",
                )
                await self._set_health(SERVING if ok else NOT_SERVING)
                serving = ok

    async def stop(self, grace_s: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, waiting Leases return, in-flight calls finish."""
        await self.health.enter_graceful_shutdown()
        self.broker.close()
        await self.server.stop(self.settings.grace_s if grace_s is None else grace_s)
        for task in self._tasks:
            await cancel_and_wait(task)
        await self.notifier.stop()
        await self.redis.aclose()
        await self.redis.connection_pool.disconnect()
        if self.embedded:
            await self.embedded.stop()


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
