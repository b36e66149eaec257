"""`jobwire serve --schedules FILE`: the schedules file (format: the SDK's
jobwire/_schedule_file.py), checked in full before the broker starts and applied before
it serves: each schedule it names is created, or made exactly what the file says."""

import asyncio
import contextlib
import logging
from pathlib import Path

from jobwire._schedule_file import ScheduleFileError, schedules_from_toml

from .api.requests import Parser
from .api.schedules import parse_schedule
from .domain import schedules
from .domain.errors import JobwireError
from .domain.limits import Defaults, Limits
from .domain.schedule_model import ScheduleSpec
from .store import Store

log = logging.getLogger(__name__)
__all__ = ["ScheduleFileError", "apply", "apply_when_reachable", "load"]


def load(path: Path, limits: Limits, defaults: Defaults) -> list[ScheduleSpec]:
    """Every schedule of the file, checked as CreateSchedule checks it; ScheduleFileError
    names the file, the schedule and each bad field."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ScheduleFileError(f"{path}: cannot read it: {err.strerror or err}") from None
    out = []
    for message in schedules_from_toml(text, str(path)):
        p = Parser(limits, defaults)
        spec = parse_schedule(p, message)
        try:
            p.done()
        except JobwireError as err:
            problems = "; ".join(f"{v.field}: {v.description}" for v in err.violations)
            raise ScheduleFileError(f"{path}: schedules.{message.name}: {problems}") from None
        out.append(spec)
    return out


async def apply(store: Store, specs: list[ScheduleSpec]) -> None:
    for spec in specs:
        try:
            await schedules.create_schedule(store, spec)
        except JobwireError as err:
            if err.reason != "SCHEDULE_EXISTS":
                raise
            await schedules.update_schedule(store, spec)
    if specs:
        log.info("applied %d schedules from the schedules file", len(specs))


async def apply_when_reachable(
    store: Store, specs: list[ScheduleSpec], closing: asyncio.Event, every_s: float
) -> None:
    """Started when Redis was down at start-up: applies the file once Redis answers."""
    while not closing.is_set():
        try:
            await apply(store, specs)
            return
        except JobwireError as err:
            log.warning("schedules file not applied yet: %s", err)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), every_s)
