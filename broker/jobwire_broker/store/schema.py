"""The fields of a job's hash and of its events, declared once, and how each value is
written and read.

Field names are the domain model's dataclass field names: a job hash holds NewJob's
stored fields (the spec, written by enqueue.lua as it receives them) and the lifecycle
fields below. lua/lib.lua names the fields scripts touch in its `J` and `E` tables; a
test holds those equal to SCRIPT_FIELDS and EVENT_FIELDS here. Values are strings:
numbers in decimal, booleans "1"/"0", maps and small records as JSON."""

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from functools import lru_cache
from typing import Any

from ..domain.limits import Defaults
from ..domain.model import (
    Backoff,
    BackoffKind,
    Event,
    JobRecord,
    JobState,
    NewJob,
    QueueEvent,
    TraceContext,
)

Raw = Mapping[bytes, bytes]

# The spec: what enqueue.lua stores as it is given.
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(NewJob) if not f.metadata)
# The rest of a job's life, written by the scripts: JobRecord's other fields, and the
# fields only scripts use.
LIFECYCLE_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRecord) if f.name not in (*SPEC_FIELDS, "queue", "seq")
)
# The last settlement of the job (its token, operation, time and outcome), so a retried
# Complete, Fail or ReleaseLease whose first reply was lost gets that outcome again.
SETTLED_FIELDS = ("settled_token", "settled_op", "settled_ms", "settled_state", "settled_due_ms")
INTERNAL_FIELDS = ("id", "exec_until_ms", "watched", *SETTLED_FIELDS)


def _flat_names(cls: Any, names: tuple[str, ...]) -> tuple[str, ...]:
    """Field names as stored: a record-valued field becomes `<field>.<member>`."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for name in names:
        record = _record_type(hints[name])
        if record is None:
            out.append(name)
        else:
            out += [f"{name}.{f.name}" for f in dataclasses.fields(record)]
    return tuple(out)


def _record_type(hint: Any) -> Any:
    """The dataclass a field holds (also when optional), or None."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint if dataclasses.is_dataclass(hint) else None


_LIFECYCLE_STORED = tuple(n for n in LIFECYCLE_FIELDS if n not in INTERNAL_FIELDS)
_SPEC_STORED = _flat_names(NewJob, SPEC_FIELDS)
# Every stored spec field, as stored: what a replaced job's new spec may leave out.
SPEC_STORED = _SPEC_STORED
# Every field of a job hash, as stored.
JOB_FIELDS = (
    *_SPEC_STORED,
    *INTERNAL_FIELDS,
    *_flat_names(JobRecord, _LIFECYCLE_STORED),
)
# The spec fields scripts read (the others they only store as given) and every
# lifecycle field: the fields scripts name, lib.lua's `J` table.
SCRIPT_SPEC_FIELDS = _flat_names(
    NewJob,
    (
        "payload",
        "headers",
        "priority",
        "max_attempts",
        "backoff",
        "lease_ms",
        "timeout_ms",
        "idempotency_key",
        "trace",
        "start_deadline_ms",
        "on_dependency_failure",
        "concurrency_key",
        "concurrency_limit",
    ),
)
SCRIPT_FIELDS = (*SCRIPT_SPEC_FIELDS, *(n for n in JOB_FIELDS if n not in _SPEC_STORED))
# An event's fields (its id and time come from the stream): lib.lua's `E` table.
EVENT_FIELDS = _flat_names(Event, ("kind", "state", "attempt", "progress", "error"))
# A queue event's fields: lib.lua's `QE` table.
QUEUE_EVENT_FIELDS = _flat_names(
    QueueEvent, ("kind", "job", "state", "attempt", "progress", "error")
)
# A worker record's fields: lib.lua's `W` table.
WORKER_FIELDS = ("last_lease_ms", "last_heartbeat_ms", "in_flight", "expired_ms")
# The options a job may leave unset, for its queue's settings or the broker's defaults
# to fill in (enqueue.lua's OPTIONS and BACKOFF), as stored.
DEFAULTED_FIELDS = _flat_names(
    NewJob, ("max_attempts", "lease_ms", "timeout_ms", "priority", "backoff")
)


def defaults(d: Defaults) -> dict[str, bytes | str]:
    """The broker's defaults of DEFAULTED_FIELDS, encoded as enqueue.lua receives them."""
    backoff = Backoff(
        BackoffKind.EXPONENTIAL, d.backoff_initial_ms, d.backoff_max_ms, d.backoff_multiplier
    )
    values = {"max_attempts": d.max_attempts, "lease_ms": d.lease_ms, "timeout_ms": 0}
    out = {name: encode(value) for name, value in values.items()}
    return {"priority": "0", **out, **_flat_record("backoff", backoff)}


# -- writing ---------------------------------------------------------------------------


def encode(value: Any) -> bytes | str:
    """A plain model value as the string the store keeps."""
    if isinstance(value, bytes | str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"))
    raise TypeError(f"no stored form for {value!r}")


def flat(name: str, value: Any) -> dict[str, bytes | str]:
    """A field as stored: one entry, or one per member of a record (none for None)."""
    if value is None:
        return {}
    if dataclasses.is_dataclass(value):
        record: Any = value
        return _flat_record(name, record)
    return {name: encode(value)}


@lru_cache(maxsize=1024)
def _flat_record(name: str, value: Any) -> dict[str, bytes | str]:
    # Cached: most jobs share a handful of backoff policies and an empty trace context.
    return {f"{name}.{f.name}": encode(getattr(value, f.name)) for f in dataclasses.fields(value)}


def members(value: Any) -> dict[str, bytes | str]:
    """A record's members by name, encoded, as scripts receive a progress or an error."""
    return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}


def _writer(hint: Any) -> Callable[[Any], Any]:
    """How to write a plain field annotated `hint` (chosen once, not per value). An
    optional field's None is written as "", which spec() leaves out."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        write = _writer(inner)
        return lambda value: "" if value is None else write(value)
    if hint in (bytes, str):
        return _same
    if hint is bool:
        return _bool_text
    if hint in (int, float):
        return repr
    if typing.get_origin(hint) is Mapping or hint is Mapping:
        return _map_text
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_text
    raise TypeError(f"no stored form for {hint!r}")


def _same(value: Any) -> Any:
    return value


def _bool_text(value: bool) -> str:
    return "1" if value else "0"


def _enum_text(value: Enum) -> str:
    return str(value.value)


def _map_text(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value), separators=(",", ":")) if value else "{}"


_SPEC_HINTS = typing.get_type_hints(NewJob)
_SPEC_PLAIN = [
    (n, _writer(_SPEC_HINTS[n])) for n in SPEC_FIELDS if _record_type(_SPEC_HINTS[n]) is None
]
_SPEC_RECORDS = [n for n in SPEC_FIELDS if _record_type(_SPEC_HINTS[n]) is not None]


def spec(job: NewJob) -> dict[str, bytes | str]:
    """The stored fields of a new job, encoded. Empty strings are left out: a missing
    field reads as its default, and a small hash is cheaper to write and to read."""
    out: dict[str, bytes | str] = {name: write(getattr(job, name)) for name, write in _SPEC_PLAIN}
    for name in _SPEC_RECORDS:
        value = getattr(job, name)
        if value is not None:
            out.update(_flat_record(name, value))
    return {name: value for name, value in out.items() if value != "" and value != b""}


# -- reading ---------------------------------------------------------------------------


Reader = Callable[[bytes], Any]


def _text(raw: bytes) -> str:
    return raw.decode()


def _flag(raw: bytes) -> bool:
    return raw == b"1"


def _words(raw: bytes) -> tuple[str, ...]:
    return tuple(raw.decode().split())


def _mapping(raw: bytes) -> dict[str, str]:
    return json.loads(raw) if raw and raw != b"{}" else {}


def _reader(hint: Any) -> Reader:
    """How to read a stored value of a plain field annotated `hint`."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    if hint is bytes:
        return bytes
    if hint is str:
        return _text
    if hint is bool:
        return _flag
    if hint is int:
        return int
    if hint is float:
        return float
    if isinstance(hint, type) and issubclass(hint, Enum):
        by_raw = {str(m.value).encode(): m for m in hint}
        return by_raw.__getitem__
    if typing.get_origin(hint) is Mapping or hint is Mapping:
        return _mapping
    if typing.get_origin(hint) is tuple:
        return _words
    raise TypeError(f"no stored form for {hint!r}")


class Decoder:
    """Reads dataclass `cls` from stored fields: each present field by its name (a
    record from its `<field>.<member>` entries, None or its default when absent), the
    missing ones left at their defaults; `extra` fills fields that are not stored.

    It runs once per leased job, so, as `dataclasses` does for __init__, it compiles
    one function per class from the declared fields: a plain keyword call, no loop."""

    def __init__(self, cls: Any, names: tuple[str, ...]) -> None:
        env: dict[str, Any] = {"cls": cls, "MISSING": dataclasses.MISSING}
        lines = [f"{name}={_value_expr(cls, name, env)}," for name in names]
        source = "def decode(raw, extra):\n    g = raw.get\n    return cls(**extra, " + (
            " ".join(lines) + ")\n"
        )
        exec(source, env)
        self._decode = env["decode"]

    def __call__(self, raw: Raw, **extra: Any) -> Any:
        return self._decode(raw, extra)


def _default_of(cls: Any, name: str) -> Any:
    found = {f.name: f for f in dataclasses.fields(cls)}[name]
    if found.default is not dataclasses.MISSING:
        return found.default
    if found.default_factory is not dataclasses.MISSING:
        return found.default_factory()
    return dataclasses.MISSING


def _value_expr(cls: Any, name: str, env: dict[str, Any], prefix: str = "") -> str:
    """The expression that reads field `name` of `cls` from `g` (raw.get)."""
    hint = typing.get_type_hints(cls)[name]
    key = f"{prefix}{name}".encode()
    default = _default_of(cls, name)
    tag = f"{prefix}{name}".replace(".", "__")
    record = _record_type(hint)
    if record is not None:
        env[f"read_{tag}"] = _record_decoder(record, f"{prefix}{name}.", default)
        return f"read_{tag}(g)"
    env[f"read_{tag}"], env[f"key_{tag}"], env[f"default_{tag}"] = _reader(hint), key, default
    if default is dataclasses.MISSING:
        return f"read_{tag}(raw[key_{tag}])"
    return f"(read_{tag}(x) if (x := g(key_{tag})) is not None else default_{tag})"


def _record_decoder(cls: Any, prefix: str, default: Any) -> Callable[[Any], Any]:
    """Reads a flattened record from `g`: its default (None, say) when its first
    member is absent; cached by the raw members, as jobs share a few backoffs."""
    members = tuple(f.name for f in dataclasses.fields(cls))
    keys = tuple(f"{prefix}{m}".encode() for m in members)
    readers = [_reader(typing.get_type_hints(cls)[m]) for m in members]
    defaults = [_default_of(cls, m) for m in members]

    @lru_cache(maxsize=256)
    def build(raw_values: tuple[bytes | None, ...]) -> Any:
        values = [
            read(v) if v is not None else d
            for read, v, d in zip(readers, raw_values, defaults, strict=True)
        ]
        return cls(*values)

    env: dict[str, Any] = {"build": build, "default": default, "keys": keys}
    values = ", ".join(f"g(keys[{i}])" for i in range(1, len(keys)))
    source = (
        "def read(g):\n"
        "    first = g(keys[0])\n"
        f"    return default if first is None else build((first, {values}))\n"
    )
    exec(source, env)  # the source is built from the model's own field names
    read: Callable[[Any], Any] = env["read"]
    return read


_RECORD_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRecord) if f.name not in ("queue", "seq")
)
_job = Decoder(JobRecord, _RECORD_FIELDS)
_event = Decoder(Event, ("kind", "state", "attempt", "progress", "error"))
_queue_event = Decoder(QueueEvent, ("kind", "job", "state", "attempt", "progress", "error"))
_TRACE_MEMBERS = tuple(f.name for f in dataclasses.fields(TraceContext))


def job(queue: str, raw: Raw) -> JobRecord:
    """A job from its hash."""
    record: JobRecord = _job(raw, queue=queue, seq=int(raw[b"id"].rsplit(b":", 1)[1]))
    return record


def event(entry_id: str, raw: Raw) -> Event:
    """An event from its stream entry."""
    found: Event = _event(raw, id=entry_id, time_ms=int(entry_id.split("-")[0]))
    return found


def queue_event(entry_id: str, raw: Raw) -> QueueEvent:
    """A queue event from its stream entry. Empty fields read as absent: a queue-wide
    event (paused, resumed) stores its job, and may store its state, as ''."""
    present = {name: value for name, value in raw.items() if value}
    found: QueueEvent = _queue_event(present, id=entry_id, time_ms=int(entry_id.split("-")[0]))
    return found


def trace(members: Mapping[str, bytes]) -> TraceContext:
    """A trace context from its members as a script returns them."""
    return TraceContext(*(members.get(name, b"").decode() for name in _TRACE_MEMBERS))


STATES = {state.value.encode(): state for state in JobState}


# A schedule's record (store/schedules.py): every field, and those scripts name, lib.lua's
# `SC` table (a test holds the two equal).
SCHEDULE_SCRIPT_FIELDS = (
    "version",
    "cursor_ms",
    "paused",
    "last_tick_ms",
    "last_job_id",
    "create_ms",
    "update_ms",
)
SCHEDULE_FIELDS = (
    "queue",
    "cron",
    "time_zone",
    "interval_ms",
    "anchor_ms",
    "template",
    "start_within_ms",
    "overlap",
    "catch_up",
    "catch_up_limit",
    *SCHEDULE_SCRIPT_FIELDS,
)
