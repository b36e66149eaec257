"""Start deadlines: the broker refuses one that is past, or before its job's run time,
by the store's clock (Redis TIME, read by enqueue.lua as it decides, so nothing is
written). This names the refused fields as the request did."""

from collections.abc import Sequence
from datetime import UTC, datetime

from ..store import DeadlineRefused
from .errors import FieldViolation, JobwireError, invalid


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def refused(err: DeadlineRefused, fields: Sequence[str]) -> JobwireError:
    """INVALID_ARGUMENT naming `<job field>.start_deadline` of each refused job; `fields`
    names the jobs' fields in the request (default `jobs[i]`)."""
    violations = []
    for index, problem, now_ms, run_at_ms in err.refusals:
        name = fields[index] if index < len(fields) else f"jobs[{index}]"
        if problem == "past":
            rule = f"must be after the enqueue time ({_time(now_ms)})"
        else:
            rule = f"must not be before the job's run time ({_time(run_at_ms)})"
        violations.append(FieldViolation(f"{name}.start_deadline", rule))
    return invalid(violations)
