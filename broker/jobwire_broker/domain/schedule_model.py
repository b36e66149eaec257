"""Schedules as plain data: what a schedule is made of, and its record as stored. No
protobuf and no Redis (the api layer maps it to the wire, store/schedules.py keeps it)."""

from dataclasses import dataclass, field
from enum import IntEnum

from .model import NewJob


class Overlap(IntEnum):
    """OverlapPolicy's values (UNSPECIFIED reads as ALLOW)."""

    ALLOW = 1
    SKIP = 2


class CatchUp(IntEnum):
    """CatchUpPolicy's values (UNSPECIFIED reads as ONE)."""

    SKIP = 1
    ONE = 2
    ALL = 3


DEFAULT_CATCH_UP_LIMIT = 100


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a schedule's owner sets. Exactly one of `cron` and `interval_ms` is set."""

    name: str
    queue: str
    job: NewJob
    cron: str = ""
    time_zone: str = ""  # "" reads as UTC
    interval_ms: int = 0
    start_within_ms: int = 0  # 0: fired jobs get no start deadline
    overlap: Overlap = Overlap.ALLOW
    catch_up: CatchUp = CatchUp.ONE
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A schedule as stored, with its state. `cursor_ms`: the time up to which its ticks
    are handled (fired, skipped or dropped); `anchor_ms`: where interval ticks count
    from; `version` changes with every write but a firing."""

    spec: ScheduleSpec
    paused: bool = False
    cursor_ms: int = 0
    anchor_ms: int = 0
    last_tick_ms: int = 0
    last_job_id: str = ""
    create_ms: int = 0
    update_ms: int = 0
    version: int = 0
    next_run_ms: list[int] = field(default_factory=list)  # filled in on reading, not stored
