"""When a schedule's ticks fall: cron expressions (cronsim) read in an IANA time zone,
or a fixed interval from an anchor, as instants in ms since the epoch.

Cron runs on the zone's wall clock. Across a daylight-saving change a wall time that
happens twice maps to its first instant, and one that does not happen to the first
instant after the gap; ticks that map to one instant fire once."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .schedule_model import ScheduleSpec

DAY = timedelta(days=1)
MAX_SCAN = 100_000  # cron candidates examined per question, so no search runs away
NAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def zone(name: str) -> ZoneInfo | None:
    """The zone called `name` ("" is UTC), or None when there is none of that name."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return None


def cron_problem(expr: str) -> str:
    """Why `expr` is not a cron expression we take, or ""."""
    if expr.startswith("@"):
        if expr not in NAMES:
            return f"is not a known @ name: one of {', '.join(NAMES)}"
        return ""
    if len(expr.split()) not in (5, 6):
        return "must have five fields (six with seconds first), or be an @ name"
    try:
        it = CronSim(expr, datetime(2000, 1, 1))
        next(it)
    except (CronSimError, StopIteration, ValueError) as exc:
        return f"is not a valid cron expression: {exc or 'no time matches it'}"
    return ""


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _wall(ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz).replace(tzinfo=None)


def instant(wall: datetime, tz: ZoneInfo) -> int:
    """The ms of wall time `wall` in `tz`: its first instant when it happens twice, the
    first instant after the gap when it does not happen."""
    first = wall.replace(tzinfo=tz, fold=0)
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        other = wall.replace(tzinfo=tz, fold=1)
        return min(_ms(first), _ms(other))
    lo, hi = sorted((_ms(first), _ms(wall.replace(tzinfo=tz, fold=1))))
    while hi - lo > 1000:  # the first whole second whose wall time is past `wall`
        mid = (lo + hi) // 2 // 1000 * 1000
        if mid <= lo:
            break
        if _wall(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid
    return hi


def _margin(ms: int, tz: ZoneInfo) -> timedelta:
    """How far wall time may jump near `ms` (0 away from a daylight-saving change)."""
    at = datetime.fromtimestamp(ms / 1000, UTC)
    before, after = (at - DAY).astimezone(tz).utcoffset(), (at + DAY).astimezone(tz).utcoffset()
    return abs((after or timedelta()) - (before or timedelta()))


def _cron(spec: ScheduleSpec, start: int, reverse: bool) -> Iterator[int]:
    """Instants of the cron ticks from about `start` on (back, with `reverse`),
    non-decreasing (non-increasing) but not deduplicated nor cut at `start`."""
    tz = zone(spec.time_zone) or ZoneInfo("UTC")
    margin = _margin(start, tz)
    # CronSim yields only times strictly after (before) its start.
    second = timedelta(seconds=1)
    wall = _wall(start, tz) + (margin + second if reverse else -margin - second)
    expr = NAMES.get(spec.cron, spec.cron)
    for n, candidate in enumerate(CronSim(expr, wall, reverse=reverse)):
        if n >= MAX_SCAN:
            return
        yield instant(candidate, tz)


def after(spec: ScheduleSpec, anchor_ms: int, after_ms: int, count: int) -> list[int]:
    """The first `count` ticks after `after_ms`."""
    if spec.interval_ms:
        first = (after_ms - anchor_ms) // spec.interval_ms + 1 if after_ms >= anchor_ms else 1
        return [anchor_ms + (first + i) * spec.interval_ms for i in range(count)]
    out: list[int] = []
    for t in _cron(spec, after_ms, reverse=False):
        if t > after_ms and (not out or t > out[-1]):
            out.append(t)
            if len(out) == count:
                break
    return out


def between(spec: ScheduleSpec, anchor_ms: int, low_ms: int, high_ms: int, last: int) -> list[int]:
    """The latest `last` ticks in (low_ms, high_ms], oldest first."""
    if high_ms <= low_ms or last <= 0:
        return []
    if spec.interval_ms:
        hi = (high_ms - anchor_ms) // spec.interval_ms
        lo = max((low_ms - anchor_ms) // spec.interval_ms + 1, 1, hi - last + 1)
        return [anchor_ms + k * spec.interval_ms for k in range(lo, hi + 1)]
    out: list[int] = []
    for t in _cron(spec, high_ms, reverse=True):
        if t <= low_ms:
            break
        if t <= high_ms and (not out or t < out[-1]):
            out.append(t)
            if len(out) == last:
                break
    return out[::-1]


def rfc3339(ms: int) -> str:
    """A tick's time as its job's `jobwire-schedule-time` header: RFC 3339 in UTC."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{ms % 1000:03d}Z" if ms % 1000 else "Z")
