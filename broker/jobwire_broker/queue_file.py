"""`jobwire serve --queues FILE`: the queue settings file (format: the SDK's
jobwire/_queue_file.py), checked in full before the broker starts and applied before it
serves, so jobs enqueued from the first call on get the file's defaults."""

import asyncio
import contextlib
import logging
from pathlib import Path

from jobwire._queue_file import QueueFileError, requests_from_toml

from .api.admin_queues import QueueUpdate, parse_update
from .domain import queues
from .domain.admin import AdminContext
from .domain.errors import JobwireError
from .domain.limits import Defaults, Limits

log = logging.getLogger(__name__)
__all__ = ["QueueFileError", "apply", "apply_when_reachable", "load"]


def load(path: Path, limits: Limits, defaults: Defaults) -> list[QueueUpdate]:
    """Every queue's update, checked as UpdateQueue checks it; QueueFileError names the
    file, the queue and each bad field."""
    try:
        text = path.read_text()
    except OSError as err:
        raise QueueFileError(f"{path}: cannot read it: {err.strerror or err}") from None
    updates = []
    for request in requests_from_toml(text, str(path)):
        try:
            updates.append(parse_update(limits, defaults, request))
        except JobwireError as err:
            problems = "; ".join(f"{v.field}: {v.description}" for v in err.violations)
            raise QueueFileError(f"{path}: queues.{request.queue}: {problems}") from None
    return updates


async def apply(ctx: AdminContext, updates: list[QueueUpdate]) -> None:
    for u in updates:
        await queues.update_queue(ctx, u.queue, u.values, u.fields)
    if updates:
        log.info("applied the settings of %d queues from the queue file", len(updates))


async def apply_when_reachable(
    ctx: AdminContext, updates: list[QueueUpdate], closing: asyncio.Event, every_s: float
) -> None:
    """Started when Redis was down at start-up: applies the file once Redis answers."""
    while not closing.is_set():
        try:
            await apply(ctx, updates)
            return
        except JobwireError as err:
            log.warning("queue file not applied yet: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), every_s)
