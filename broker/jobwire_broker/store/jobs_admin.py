"""The job part of the admin service over its scripts: scan.lua reads a stretch of a
sorted set from a position (a page, the next batch of a bulk operation, or a count), and
retry_jobs.lua, delete_jobs.lua and promote_jobs.lua change jobs by id (all or nothing)
or at the positions a scan found (each only while still there).

A position is a (score, member) pair of a set's order, kept as the strings Redis gave:
scores are doubles that must go back to Redis unchanged (ready scores need all 53 bits).
Seqs go to the scripts and come back as decimal strings too: as MessagePack numbers they
would reach Lua as doubles, which hold no more than 15 digits exactly.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..domain.model import JobRecord, JobState
from . import schema
from .batches import EXAMINE_PER_CALL, JOBS_PER_CALL
from .store import Store

# Every bulk operation changes, and a scan reads, at most this many jobs per script call.
BULK_BATCH = JOBS_PER_CALL
# A filtered scan looks at most at this many members per call.
SCAN_LIMIT = EXAMINE_PER_CALL
GROUPS = "dlgroups"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a sorted set's order: strictly after it is where a scan goes on."""

    score: str
    member: str


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Narrows a set of jobs; an empty field matches anything."""

    error_type: str = ""
    header_key: str = ""
    header_value: str = ""  # with header_key; empty: any value
    fingerprint: str = ""

    def __bool__(self) -> bool:
        return bool(self.error_type or self.header_key or self.fingerprint)


@dataclass(frozen=True, slots=True)
class Source:
    """The set a scan reads: a job state's, or (for dead jobs) one dead-letter group's,
    which holds the same members with the same scores."""

    state: JobState
    group: str = ""


@dataclass(frozen=True, slots=True)
class Bound:
    """Where a scan stops: after this position, or after every member at `score` when
    `member` is None."""

    score: str
    member: str | None = None


@dataclass(frozen=True, slots=True)
class DeadGroup:
    fingerprint: str
    error_type: str
    template: str
    count: int
    first_ms: int
    last_ms: int
    sample_seq: int
    sample_message: str


@dataclass(frozen=True, slots=True)
class Scan:
    """What one scan call found. `next` is None when it reached the end."""

    items: list[Any]
    matched: int
    examined: int
    bytes: int  # about what the items take in a reply (scan.lua's measure)
    next: Position | None
    last: Position | None  # the set's last member now
    now_ms: int
    positions: list[Position] = field(default_factory=list)  # of `items`, in order


@dataclass(frozen=True, slots=True)
class Change:
    """The answer of a change by id: how many jobs changed, or the first job refused
    (then nothing changed): its seq and state (None when it does not exist)."""

    done: int
    refused_seq: int = 0
    refused_state: JobState | None = None


class JobsAdminStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def scan(
        self,
        queue: str,
        source: Source | str,
        mode: str,
        *,
        after: Position | None = None,
        until: Bound | None = None,
        reverse: bool = False,
        job_filter: JobFilter | None = None,
        want: int = BULK_BATCH,
        examine: int = SCAN_LIMIT,
        payloads: bool = False,
        max_bytes: int = 0,
        may_be_empty: bool = False,
    ) -> Scan:
        """One scan.lua call over `source` (a Source, or GROUPS for the dead-letter
        groups) in `mode`: 'jobs' (items are JobRecords), 'positions' (items are seqs),
        'groups' (DeadGroups) or 'count' (no items)."""
        args: dict[str, Any] = {
            "mode": mode,
            "reverse": reverse,
            "want": want,
            "examine": examine,
            "payloads": payloads,
            "max_bytes": max_bytes,
            "may_be_empty": may_be_empty,
        }
        if isinstance(source, Source):
            args["set"], args["group"] = source.state.value, source.group
        else:
            args["set"] = source
        if after is not None:
            args["after"] = {"score": after.score, "member": after.member}
        if until is not None:
            args["through"] = {"score": until.score}
            if until.member is not None:
                args["through"]["member"] = until.member
        if job_filter:
            args["filter"] = {
                "error_type": job_filter.error_type,
                "header_key": job_filter.header_key,
                "header_value": job_filter.header_value,
                "fingerprint": job_filter.fingerprint,
            }
        out = await self.store.run("scan", queue, args)
        rows: list[dict[str, Any]] = out["items"]
        return Scan(
            items=[_item(queue, mode, row) for row in rows],
            matched=int(out["matched"]),
            examined=int(out["examined"]),
            bytes=int(out["bytes"]),
            next=_position(out["next"]),
            last=_position(out["last"]),
            now_ms=int(out["now"]),
            positions=[_row_position(mode, row) for row in rows],
        )

    async def retry(
        self,
        queue: str,
        seqs: Sequence[int] = (),
        at: tuple[JobState, list[Position]] | None = None,
    ) -> Change:
        return await self._change("retry_jobs", queue, seqs, at)

    async def delete(
        self,
        queue: str,
        seqs: Sequence[int] = (),
        at: tuple[JobState, list[Position]] | None = None,
    ) -> Change:
        return await self._change("delete_jobs", queue, seqs, at)

    async def promote(
        self,
        queue: str,
        seqs: Sequence[int] = (),
        at: tuple[JobState, list[Position]] | None = None,
    ) -> Change:
        return await self._change("promote_jobs", queue, seqs, at)

    async def _change(
        self,
        script: str,
        queue: str,
        seqs: Sequence[int],
        at: tuple[JobState, list[Position]] | None,
    ) -> Change:
        """By id (`seqs`, all or nothing), or at positions a scan found in a state's set."""
        args: dict[str, Any]
        if at is None:
            args = {"seqs": [str(seq) for seq in seqs]}
        else:
            state, positions = at
            args = {
                "state": state.value,
                "positions": [{"seq": p.member, "score": p.score} for p in positions],
            }
        out = await self.store.run(script, queue, args)
        raw_seq: bytes = out["refused_seq"]
        raw_state = out["refused_state"]
        return Change(
            done=int(out["done"]),
            refused_seq=int(raw_seq.decode()) if raw_seq else 0,
            refused_state=schema.STATES[raw_state] if raw_state else None,
        )


def _position(raw: Any) -> Position | None:
    """A position as a script returns it; an empty list (an empty Lua table) for none."""
    if not raw:
        return None
    return Position(raw["score"].decode(), raw["member"].decode())


def _row_position(mode: str, row: dict[str, Any]) -> Position:
    score = row["score"].decode()
    if mode == "jobs":
        fields = _pairs(row["fields"])
        return Position(score, fields[b"id"].rsplit(b":", 1)[1].decode())
    if mode == "groups":
        return Position(score, row["fingerprint"].decode())
    return Position(score, row["seq"].decode())


def _item(queue: str, mode: str, row: dict[str, Any]) -> Any:
    if mode == "jobs":
        record: JobRecord = schema.job(queue, _pairs(row["fields"]))
        return record
    if mode == "groups":
        return DeadGroup(
            fingerprint=row["fingerprint"].decode(),
            error_type=row["error_type"].decode(),
            template=row["template"].decode(),
            count=int(row["count"]),
            first_ms=int(row["first_ms"]),
            last_ms=int(row["last_ms"]),
            sample_seq=int(row["sample_seq"]),
            sample_message=row["sample_message"].decode(errors="replace"),
        )
    return int(row["seq"])


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))
