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

from ..domain.model import Event, JobRecord, JobState, NewJob, TraceContext

Raw = Mapping[bytes, bytes]

# The spec: what enqueue.lua stores as it is given.
SPEC_FIELDS = tuple(f.name for f in dataclasses.fields(NewJob) if not f.metadata)
# The rest of a job's life, written by the scripts: JobRecord's other fields, and the
# fields only scripts use.
LIFECYCLE_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRecord) if f.name not in (*SPEC_FIELDS, "queue", "seq")
)
INTERNAL_FIELDS = ("id", "exec_until_ms", "watched")


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


_LIFECYCLE_STORED = tuple(
    n for n in LIFECYCLE_FIELDS if n not in ("id", "exec_until_ms", "watched")
)
_SPEC_STORED = _flat_names(NewJob, SPEC_FIELDS)
# Every field of a job hash, as stored.
JOB_FIELDS = (
    *_SPEC_STORED,
    "id",
    "exec_until_ms",
    "watched",
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
    ),
)
SCRIPT_FIELDS = (*SCRIPT_SPEC_FIELDS, *(n for n in JOB_FIELDS if n not in _SPEC_STORED))
# An event's fields (its id and time come from the stream): lib.lua's `E` table.
EVENT_FIELDS = _flat_names(Event, ("kind", "state", "attempt", "progress", "error"))


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


def spec(job: NewJob) -> dict[str, bytes | str]:
    """The stored fields of a new job, encoded."""
    out: dict[str, bytes | str] = {}
    for name in SPEC_FIELDS:
        out.update(flat(name, getattr(job, name)))
    return out


# -- reading ---------------------------------------------------------------------------


Reader = Callable[[bytes], Any]


def _text(raw: bytes) -> str:
    return raw.decode()


def _flag(raw: bytes) -> bool:
    return raw == b"1"


def _mapping(raw: bytes) -> dict[str, str]:
    return json.loads(raw) if raw and raw != b"{}" else {}


def _reader(hint: Any) -> Reader:
    """How to read a stored value of a plain field annotated `hint`."""
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
    raise TypeError(f"no stored form for {hint!r}")


class Decoder:
    """Reads dataclass `cls` from stored fields: each present field by its name (a
    record from its `<field>.<member>` entries), the missing ones left at their
    defaults; `extra` fills fields that are not stored."""

    def __init__(self, cls: Any, names: tuple[str, ...]) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.plain: list[tuple[bytes, str, Reader]] = []
        self.records: list[tuple[str, Decoder, bytes]] = []
        for name in names:
            record = _record_type(hints[name])
            if record is None:
                self.plain.append((name.encode(), name, _reader(hints[name])))
            else:
                members = tuple(f.name for f in dataclasses.fields(record))
                first = f"{name}.{members[0]}".encode()
                self.records.append((name, Decoder(record, members).under(name), first))

    def under(self, name: str) -> "Decoder":
        """The same reader for fields stored as `<name>.<member>`."""
        self.plain = [(f"{name}.".encode() + key, n, r) for key, n, r in self.plain]
        return self

    def __call__(self, raw: Raw, **extra: Any) -> Any:
        values = {name: read(raw[key]) for key, name, read in self.plain if key in raw}
        for name, decode, first in self.records:
            if first in raw:
                values[name] = decode(raw)
        return self.cls(**values, **extra)


_RECORD_FIELDS = tuple(
    f.name for f in dataclasses.fields(JobRecord) if f.name not in ("queue", "seq")
)
_job = Decoder(JobRecord, _RECORD_FIELDS)
_event = Decoder(Event, ("kind", "state", "attempt", "progress", "error"))
_trace = Decoder(TraceContext, tuple(f.name for f in dataclasses.fields(TraceContext)))


def job(queue: str, raw: Raw) -> JobRecord:
    """A job from its hash."""
    record: JobRecord = _job(raw, queue=queue, seq=int(raw[b"id"].rsplit(b":", 1)[1]))
    return record


def event(entry_id: str, raw: Raw) -> Event:
    """An event from its stream entry."""
    found: Event = _event(raw, id=entry_id, time_ms=int(entry_id.split("-")[0]))
    return found


def trace(members: Mapping[str, bytes]) -> TraceContext:
    """A trace context from its members as a script returns them."""
    found: TraceContext = _trace({k.encode(): v for k, v in members.items()})
    return found


STATES = {state.value.encode(): state for state in JobState}
