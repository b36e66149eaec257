"""The queue settings file: many queues' settings in one TOML file, kept in git and
applied by `jobwire queues apply FILE` and `jobwire serve --queues FILE`.

    [queues.emails]
    max_attempts = 5
    lease_duration = "45s"
    backoff = { kind = "exponential", initial_delay = "1s", max_delay = "10m" }

    [queues.reports]
    priority = 3
    keep_completed = 50
    concurrency_limit = 2
    rate_limit = { limit = 10, period = "1s" }
    key_rate_limit = { limit = 100, period = "1m" }

The file is declarative: each queue it names gets exactly the settings written there,
and a setting left out goes back to the broker's default, so applying one file twice
changes nothing and deleting a line undoes it. Queues the file does not name are left
alone. Keys are QueueSettings' field names (protos/jobwire/v1/admin_service.proto);
durations are strings such as "500ms", "45s", "5m", "1h30m", "7d", or a number of
seconds. Only syntax and types are checked here; the broker checks ranges and names, as
for any UpdateQueue call. TOML (read with the standard library's tomllib) and not
YAML: it needs no dependency and has no implicit typing surprises.
"""

import math
import re
import tomllib
from dataclasses import fields
from typing import Any

from google.protobuf import field_mask_pb2

from ._admin import DURATION_SETTINGS, RATE_SETTINGS, QueueSettings, RateLimit
from ._models import Backoff, BackoffKind
from .v1 import admin_service_pb2 as pb

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")
SETTINGS = [f.name for f in fields(QueueSettings)]
BACKOFF_KEYS = {"kind", "initial_delay", "max_delay", "multiplier", "jitter"}
RATE_KEYS = {"limit", "period"}
BACKOFF_KINDS = {k.name.lower(): k for k in BackoffKind if k.value}


class QueueFileError(ValueError):
    """The file cannot be read as queue settings; the message names the file and key."""


def parse_duration(text: str) -> float:
    """Seconds from `30s`, `500ms`, `5m`, `1h30m`, `7d`, or a plain number of seconds."""
    text = text.strip()
    if NUMBER_RE.fullmatch(text):
        return float(text)
    total, pos = 0.0, 0
    for m in DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total, pos = total + float(m.group(1)) * UNITS[m.group(2)], m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 5m, 1h30m, 7d)")
    return total


def requests_from_toml(text: str, path: str) -> list[pb.UpdateQueueRequest]:
    """One UpdateQueueRequest per queue of the file, in the file's order, each with a
    mask naming every setting (those left out go back to the defaults)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise QueueFileError(f"{path}: not valid TOML: {err}") from None
    extra = sorted(set(data) - {"queues"})
    if extra:
        raise QueueFileError(f"{path}: unknown top-level key {extra[0]!r} (only [queues.NAME])")
    queues = data.get("queues", {})
    if not isinstance(queues, dict):
        raise QueueFileError(f"{path}: queues: must be tables, [queues.NAME]")
    out = []
    for name, table in queues.items():
        where = f"{path}: queues.{name}"
        if not isinstance(table, dict):
            raise QueueFileError(f"{where}: must be a table of settings")
        settings = _settings(table, where)
        out.append(
            pb.UpdateQueueRequest(
                queue=name,
                settings=settings.to_proto(),
                update_mask=field_mask_pb2.FieldMask(paths=SETTINGS),
            )
        )
    return out


def _settings(table: dict[str, Any], where: str) -> QueueSettings:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in SETTINGS:
            raise QueueFileError(f"{where}.{key}: unknown setting (one of {', '.join(SETTINGS)})")
        try:
            values[key] = _value(key, value)
        except (TypeError, ValueError) as err:
            raise QueueFileError(f"{where}.{key}: {err}") from None
    return QueueSettings(**values)


def _value(key: str, value: Any) -> Any:
    if key == "backoff":
        return _backoff(value)
    if key in DURATION_SETTINGS:
        return _duration(value)
    if key in RATE_SETTINGS:
        return _rate_limit(value)
    return _integer(value)


def _rate_limit(value: Any) -> RateLimit:
    """A table: limit (leases) and period (a duration), e.g. { limit = 10, period = "1s" }."""
    only_keys(value, RATE_KEYS, '{ limit = 10, period = "1s" }')
    if "limit" not in value or "period" not in value:
        raise ValueError("limit and period are required")
    return RateLimit(_integer(value["limit"]), _duration(value["period"]))


def only_keys(value: Any, keys: set[str], example: str) -> dict[str, Any]:
    """`value` as a TOML table of only `keys`; else the error says what one looks like."""
    if not isinstance(value, dict):
        raise TypeError(f"must be a table, e.g. {example}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (one of {', '.join(sorted(keys))})")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be a whole number, got {value!r}")
    return value


def _duration(value: Any) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f'must be a duration such as "30s" or a number of seconds, got {value!r}')
    if value < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return float(value)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {value!r}")
    return float(value)


def _backoff(value: Any) -> Backoff:
    """A table: kind (fixed, linear, exponential), initial_delay, and optionally
    max_delay (default: initial_delay for fixed, 1h otherwise), multiplier (2), jitter (0)."""
    only_keys(value, BACKOFF_KEYS, '{ kind = "exponential", initial_delay = "1s" }')
    kind = BACKOFF_KINDS.get(str(value.get("kind", "")).lower())
    if kind is None:
        raise ValueError(f"kind must be one of {', '.join(BACKOFF_KINDS)}")
    if "initial_delay" not in value:
        raise ValueError("initial_delay is required")
    initial = _duration(value["initial_delay"])
    fallback = initial if kind is BackoffKind.FIXED else 3600.0
    maximum = _duration(value["max_delay"]) if "max_delay" in value else fallback
    multiplier = _number(value.get("multiplier", 2.0), "multiplier")
    jitter = _number(value.get("jitter", 0.0), "jitter")
    return Backoff(kind, initial, maximum, multiplier, jitter)
