"""The loop every replica runs: take back expired leases, expire jobs past their start
deadline, promote due jobs, resolve dependants left for later, apply retention. Each step
is one atomic script per queue, so replicas may overlap freely."""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field

from ..store import Store, StoreUnavailable
from ..store.batches import JOBS_PER_CALL
from .hooks import Hooks, NoHooks
from .jitter import JITTER
from .model import Retention
from .workers import forget_old_workers

log = logging.getLogger(__name__)
# Script calls per step and queue in one tick: up to 1000 jobs moved per tick and step.
ROUNDS = 10


@dataclass(frozen=True, slots=True)
class MaintenanceSettings:
    interval_s: float = 0.25
    prune_interval_s: float = 5.0
    retention: Retention = field(default_factory=Retention)


class Maintenance:
    def __init__(
        self, store: Store, settings: MaintenanceSettings, hooks: Hooks | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.hooks = hooks or NoHooks()
        self._last_prune = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Runs until `stop` is set (checked between ticks, so shutdown never depends
        on a cancel reaching the loop)."""
        while not stop.is_set():
            try:
                await self.tick()
            except StoreUnavailable as exc:
                log.debug("maintenance skipped, store unavailable: %s", exc)
            # Jitter keeps replicas from running in lockstep.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_s * JITTER.uniform(0.8, 1.2)):
                    await stop.wait()

    async def tick(self) -> None:
        prune = time.monotonic() - self._last_prune >= self.settings.prune_interval_s
        queues = await self.store.queues()
        await asyncio.gather(*(self._queue(q, prune) for q in queues))
        if prune:
            self._last_prune = time.monotonic()

    async def _queue(self, queue: str, prune: bool) -> None:
        # Each script call moves at most JOBS_PER_CALL jobs (so none blocks Redis for
        # long); a backlog gets up to ROUNDS calls per tick, one after another.
        for _ in range(ROUNDS):
            start = time.time_ns()
            reclaimed = await self.store.reclaim(queue, JOBS_PER_CALL)
            if reclaimed:
                log.info("took back %d expired leases in %s", len(reclaimed), queue)
                self.hooks.expired(queue, reclaimed, start)
            if len(reclaimed) < JOBS_PER_CALL:
                break
        await self._expire(queue)
        for _ in range(ROUNDS):
            if await self.store.promote(queue, JOBS_PER_CALL) < JOBS_PER_CALL:
                break
        await self._resolve(queue)
        if prune:
            for _ in range(ROUNDS):
                deleted = await self.store.prune(queue, self.settings.retention, JOBS_PER_CALL)
                if deleted < JOBS_PER_CALL:
                    break
            await forget_old_workers(self.store, queue)

    async def _expire(self, queue: str) -> None:
        """Drops pending jobs past their start deadline, so none waits as ready for a
        Lease to notice it."""
        for _ in range(ROUNDS):
            expired, examined = await self.store.expire(queue, JOBS_PER_CALL)
            if expired:
                log.info("expired %d jobs at their start deadline in %s", expired, queue)
            if examined < JOBS_PER_CALL:
                break

    async def _resolve(self, queue: str) -> None:
        """Dependants their dependency's script left for later (docs/flows.md)."""
        for _ in range(ROUNDS):
            _, left = await self.store.resolve(queue)
            if not left:
                break
