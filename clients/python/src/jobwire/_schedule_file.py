"""The schedules file: many schedules in one TOML file, kept in git and applied by
`jobwire schedules apply FILE` and `jobwire serve --schedules FILE`.

    [schedules.hourly-sync]
    queue = "sync"
    cron = "0 * * * *"
    time_zone = "Europe/Berlin"
    overlap = "skip"
    job = { payload = { full = false }, max_attempts = 3 }

    [schedules.heartbeat]
    queue = "ops"
    interval = "5m"
    catch_up = "skip"

The file is declarative: each schedule it names gets exactly what is written there (a
key left out goes back to its default), so applying one file twice changes nothing.
Schedules the file does not name are left alone. Keys are Schedule's field names
(protos/jobwire/v1/schedule_service.proto); `overlap` is allow or skip, `catch_up`
skip, one or all; durations are as in the queue settings file ("30s", "5m", "1h30m").
A job's `payload` is a string (sent as text) or a table or array (sent as JSON); its other
keys are JobSpec's: content_type, headers, priority, max_attempts, delay, lease_duration,
execution_timeout, backoff, concurrency_key, concurrency_limit. Only syntax and types are
checked here; the broker checks the rest, as for any CreateSchedule call.
"""

import tomllib
from collections.abc import Callable
from typing import Any

from ._models import job_spec
from ._queue_file import _backoff, _duration, _integer, only_keys
from ._schedules import FIELDS, CatchUpPolicy, OverlapPolicy, Schedule
from .v1 import schedule_service_pb2 as pb

KEYS = {"queue", "cron", "time_zone", "interval", "start_within", "overlap", "catch_up"}
KEYS |= {"catch_up_limit", "job"}
JOB_KEYS = {"payload", "content_type", "headers", "priority", "max_attempts", "delay"}
JOB_KEYS |= {"lease_duration", "execution_timeout", "backoff", "concurrency_key"}
JOB_KEYS |= {"concurrency_limit"}
OVERLAP = {p.name.lower(): p for p in OverlapPolicy}
CATCH_UP = {p.name.lower(): p for p in CatchUpPolicy}


class ScheduleFileError(ValueError):
    """The file cannot be read as schedules; the message names the file and key."""


def schedules_from_toml(text: str, path: str) -> list[pb.Schedule]:
    """One Schedule per `[schedules.NAME]` table, in the file's order."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScheduleFileError(f"{path}: not valid TOML: {err}") from None
    extra = sorted(set(data) - {"schedules"})
    if extra:
        raise ScheduleFileError(
            f"{path}: unknown top-level key {extra[0]!r} (only [schedules.NAME])"
        )
    tables = data.get("schedules", {})
    if not isinstance(tables, dict):
        raise ScheduleFileError(f"{path}: schedules: must be tables, [schedules.NAME]")
    out = []
    for name, table in tables.items():
        where = f"{path}: schedules.{name}"
        if not isinstance(table, dict):
            raise ScheduleFileError(f"{where}: must be a table")
        out.append(_schedule(name, table, where).to_proto())
    return out


def update_request(schedule: pb.Schedule) -> pb.UpdateScheduleRequest:
    """The UpdateSchedule that makes an existing schedule exactly what the file says."""
    request = pb.UpdateScheduleRequest(schedule=schedule)
    request.update_mask.paths.extend(FIELDS)
    return request


def _schedule(name: str, table: dict[str, Any], where: str) -> Schedule:
    unknown = sorted(set(table) - KEYS)
    if unknown:
        raise ScheduleFileError(
            f"{where}.{unknown[0]}: unknown key (one of {', '.join(sorted(KEYS))})"
        )
    values: dict[str, Any] = {}
    for key, value in table.items():
        try:
            values[key] = _value(key, value)
        except (TypeError, ValueError) as err:
            raise ScheduleFileError(f"{where}.{key}: {err}") from None
    values.setdefault("queue", "")
    return Schedule(name=name, **values)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {value!r}")
    return value


def _value(key: str, value: Any) -> Any:
    if key in ("queue", "cron", "time_zone"):
        return _text(value)
    if key in ("interval", "start_within"):
        return _duration(value)
    if key == "catch_up_limit":
        return _integer(value)
    if key == "overlap":
        return _choice(value, OVERLAP)
    if key == "catch_up":
        return _choice(value, CATCH_UP)
    return _job(value)


def _choice(value: Any, choices: dict[str, Any]) -> Any:
    found = choices.get(str(value).lower())
    if found is None:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return found


JOB_READERS: dict[str, Callable[[Any], Any]] = {
    "content_type": lambda v: _text(v),
    "headers": lambda v: _headers(v),
    "priority": lambda v: _integer(v),
    "max_attempts": lambda v: _integer(v),
    "delay": lambda v: _duration(v),
    "lease_duration": lambda v: _duration(v),
    "execution_timeout": lambda v: _duration(v),
    "backoff": lambda v: _backoff(v),
    "concurrency_key": lambda v: _text(v),
    "concurrency_limit": lambda v: _integer(v),
}


def _headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TypeError("headers must be a table of strings")
    return value


def _job(value: Any) -> Any:
    only_keys(value, JOB_KEYS, '{ payload = "hello", max_attempts = 3 }')
    options: dict[str, Any] = {k: JOB_READERS[k](v) for k, v in value.items() if k != "payload"}
    return job_spec(value.get("payload", b""), **options)
