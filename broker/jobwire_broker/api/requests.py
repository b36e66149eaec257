"""Turns requests into domain values, collecting every field violation on the way, so a
bad request is rejected whole with each problem named and nothing written."""

import json
import math
import re
from collections.abc import Sequence
from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import job_pb2

from ..domain.errors import FieldViolation, JobwireError, invalid
from ..domain.ids import job_id as format_job_id
from ..domain.ids import parse_job_id, queue_problem
from ..domain.limits import SECOND_MS, Defaults, Limits
from ..domain.model import (
    MAX_DEPENDENCIES,
    Backoff,
    BackoffKind,
    CompleteItem,
    DependencyPolicy,
    FailItem,
    HeartbeatItem,
    IdempotencyMode,
    JobError,
    NewJob,
    Progress,
    ReleaseItem,
    TraceContext,
)

T = TypeVar("T", int, None)
EVENT_ID_RE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})", re.ASCII)
UINT64_MAX = 2**64 - 1
# Integral numbers below this print exactly as integers; larger ones in exponent form.
EXACT_INT = 2**53
MAX_TOKEN_BYTES = 128
MAX_TRACEPARENT_BYTES = 256
MAX_TRACESTATE_BYTES = 512
MAX_BAGGAGE_BYTES = 8_192
IDEMPOTENCY_MODES = frozenset(m.value for m in IdempotencyMode)
MAX_TIMESTAMP_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, Timestamp's own limit
MAX_CONCURRENCY_LIMIT = 10_000
MAX_RATE_LIMIT_DELAY_MS = 3_600_000


# W3C Trace Context: version-traceid-parentid-flags, lowercase hex; a future version may
# add fields after a dash, version ff is invalid, all-zero ids are invalid.
TRACEPARENT_RE = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-[0-9a-f]{2}"
    r"(?P<rest>-.*)?",
    re.ASCII,
)
TRACEPARENT_FORMAT = (
    "must be a W3C traceparent: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>,"
    " lowercase, ids not all zeros"
)


def valid_event_id(event_id: str) -> bool:
    """A stream entry id as this API hands them out: <ms>-<seq>, both uint64. The largest
    id is refused too: no entry can follow it, and Redis refuses to read after it."""
    parts = EVENT_ID_RE.fullmatch(event_id)
    if parts is None:
        return False
    ms, seq = (int(n) for n in parts.groups())
    return ms <= UINT64_MAX and seq <= UINT64_MAX and (ms, seq) != (UINT64_MAX, UINT64_MAX)


def valid_traceparent(value: str) -> bool:
    found = TRACEPARENT_RE.fullmatch(value)
    if not found or found["version"] == "ff":
        return False
    if found["version"] == "00" and found["rest"]:
        return False
    return found["trace"] != "0" * 32 and found["span"] != "0" * 16


class Parser:
    """Parses one request. Check methods record violations; `done()` raises them all."""

    def __init__(self, limits: Limits, defaults: Defaults) -> None:
        self.limits = limits
        self.defaults = defaults
        self.violations: list[FieldViolation] = []

    def bad(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def done(self) -> None:
        if self.violations:
            raise invalid(self.violations)

    # -- scalars ----------------------------------------------------------------------

    def size(self, field: str, value: str | bytes, limit: int) -> None:
        n = len(value.encode()) if isinstance(value, str) else len(value)
        if n > limit:
            self.bad(field, f"is too large: {n} bytes, limit {limit}")

    def payload_size(self, field: str, value: bytes) -> None:
        """Like size(), but the error's reason becomes PAYLOAD_TOO_LARGE."""
        limit = self.limits.max_payload_bytes
        if len(value) > limit:
            self.violations.append(
                FieldViolation(
                    field,
                    f"is too large: {len(value)} bytes, limit {limit}",
                    payload_too_large=True,
                )
            )

    def event_id(self, field: str, event_id: str) -> str:
        """Empty, or a stream entry id as valid_event_id() takes."""
        if event_id and not valid_event_id(event_id):
            self.bad(field, "must be an event_id received from StreamProgress")
        return event_id

    def required(self, field: str, value: str) -> None:
        if not value:
            self.bad(field, "is required")

    def in_range(self, field: str, value: float, low: float, high: float) -> None:
        if math.isnan(value) or not low <= value <= high:
            self.bad(field, f"must be in [{_number(low)}, {_number(high)}], got {_number(value)}")

    def duration_ms(self, field: str, d: Duration, low_ms: int, high_ms: int) -> int:
        """A set Duration in ms; violations for negative, malformed or out-of-range."""
        if d.seconds < 0 or d.nanos < 0 or d.nanos > 999_999_999:
            self.bad(field, "must be a non-negative duration")
            return 0
        # Checked in whole nanoseconds, so 12 h + 1 ns is past 12 h, not rounded to it.
        ns = d.seconds * 1_000_000_000 + d.nanos
        if not low_ms * 1_000_000 <= ns <= high_ms * 1_000_000:
            self.bad(field, f"must be in [{_human(low_ms)}, {_human(high_ms)}]")
        return ns // 1_000_000

    def option_ms(self, field: str, d: Duration, low_ms: int, high_ms: int, default: T) -> int | T:
        """An optional Duration of a job's options: unset and zero both mean `default`
        (so a message with every field at its zero value, as grpcurl's -msg-template
        writes, is valid), anything else must be in [low_ms, high_ms]."""
        if d.seconds == 0 and d.nanos == 0:
            return default
        return self.duration_ms(field, d, low_ms, high_ms)

    def timestamp_ms(self, field: str, t: Timestamp) -> int:
        if t.seconds < 0 or not 0 <= t.nanos <= 999_999_999:
            self.bad(field, "must be a valid time after 1970")
            return 0
        return t.seconds * 1_000 + t.nanos // 1_000_000

    def queue(self, field: str, queue: str) -> str:
        problem = queue_problem(queue)
        if problem:
            self.bad(field, problem)
        return queue

    def job_id(self, field: str, job_id: str) -> tuple[str, int]:
        try:
            return parse_job_id(job_id, field)
        except JobwireError as err:
            self.violations += err.violations
            return "", 0

    def token(self, field: str, token: str) -> str:
        self.required(field, token)
        self.size(field, token, MAX_TOKEN_BYTES)
        return token

    def batch(self, field: str, n: int) -> None:
        if not 1 <= n <= self.limits.max_batch:
            self.bad(field, f"must hold 1 to {self.limits.max_batch} items, got {n}")

    # -- messages ---------------------------------------------------------------------

    def new_job(self, field: str, spec: job_pb2.JobSpec) -> NewJob:
        lim, dft = self.limits, self.defaults
        self.size(f"{field}.concurrency_key", spec.concurrency_key, lim.max_key_bytes)
        self.in_range(
            f"{field}.concurrency_limit", spec.concurrency_limit, 0, MAX_CONCURRENCY_LIMIT
        )
        self.payload_size(f"{field}.payload", spec.payload)
        self.size(f"{field}.content_type", spec.content_type, lim.max_content_type_bytes)
        self._headers(f"{field}.headers", dict(spec.headers))
        self.in_range(f"{field}.priority", spec.priority, -lim.max_priority, lim.max_priority)
        delay = self.option_ms(f"{field}.delay", spec.delay, 0, lim.max_delay_ms, 0)
        run_at = 0
        if spec.HasField("run_time"):
            run_at = self.timestamp_ms(f"{field}.run_time", spec.run_time)
        self.in_range(f"{field}.max_attempts", spec.max_attempts, 0, lim.max_attempts)
        # Options left unset stay None: the queue's settings, else the broker's
        # defaults, fill them in when the job is stored.
        lease = self.option_ms(
            f"{field}.lease_duration",
            spec.lease_duration,
            lim.min_lease_ms,
            lim.max_lease_ms,
            None,
        )
        timeout = self.option_ms(
            f"{field}.execution_timeout",
            spec.execution_timeout,
            SECOND_MS,
            lim.max_timeout_ms,
            None,
        )
        self.size(f"{field}.idempotency_key", spec.idempotency_key, lim.max_key_bytes)
        window = self.option_ms(
            f"{field}.idempotency_window",
            spec.idempotency_window,
            SECOND_MS,
            lim.max_idempotency_window_ms,
            dft.idempotency_window_ms,
        )
        return NewJob(
            payload=spec.payload,
            content_type=spec.content_type,
            headers=dict(spec.headers),
            priority=spec.priority or None,
            delay_ms=delay,
            run_at_ms=run_at,
            max_attempts=spec.max_attempts or None,
            backoff=self.backoff(f"{field}.backoff", spec.backoff)
            if spec.HasField("backoff")
            else None,
            lease_ms=lease,
            timeout_ms=timeout,
            idempotency_key=spec.idempotency_key,
            idempotency_window_ms=window,
            trace=self.trace(f"{field}.trace_context", spec.trace_context),
            idempotency_mode=self.idempotency_mode(
                f"{field}.idempotency_mode", spec.idempotency_mode
            ),
            start_deadline_ms=self.start_deadline(field, spec, run_at),
            depends_on=self.dependencies(f"{field}.depends_on", spec.depends_on),
            on_dependency_failure=self.dependency_policy(
                f"{field}.on_dependency_failure", spec.on_dependency_failure
            ),
            concurrency_key=spec.concurrency_key,
            concurrency_limit=(spec.concurrency_limit or None) if spec.concurrency_key else None,
        )

    def idempotency_mode(self, field: str, value: int) -> IdempotencyMode:
        if value == job_pb2.IDEMPOTENCY_MODE_UNSPECIFIED:
            return IdempotencyMode.FIRST
        if value not in IDEMPOTENCY_MODES:
            self.bad(field, f"is not a known IdempotencyMode: {value}")
            return IdempotencyMode.FIRST
        return IdempotencyMode(value)

    def start_deadline(self, field: str, spec: job_pb2.JobSpec, run_at_ms: int) -> int | None:
        """The deadline in ms, or None. Whether it is after the enqueue time (and after a
        `delay`) only the store's clock can tell: enqueue.lua checks that."""
        if not spec.HasField("start_deadline"):
            return None
        name, t = f"{field}.start_deadline", spec.start_deadline
        if t.seconds > MAX_TIMESTAMP_SECONDS:
            self.bad(name, "must be a valid time before year 10000")
            return None
        before = len(self.violations)
        deadline = self.timestamp_ms(name, t)
        if len(self.violations) > before:
            return None
        if deadline == 0:
            self.bad(name, "must be after the enqueue time")
        elif deadline < run_at_ms:
            self.bad(name, "must not be before the job's run_time")
        return deadline

    def dependencies(self, field: str, ids: Sequence[str]) -> tuple[str, ...]:
        """JobSpec.depends_on: at most MAX_DEPENDENCIES distinct, well-formed job ids."""
        if len(ids) > MAX_DEPENDENCIES:
            self.bad(field, f"has {len(ids)} entries, limit {MAX_DEPENDENCIES}")
            return ()
        seen: dict[str, int] = {}
        for i, raw in enumerate(ids):
            queue, seq = self.job_id(f"{field}[{i}]", raw)
            if not queue:
                continue
            normal = format_job_id(queue, seq)
            if normal in seen:
                self.bad(f"{field}[{i}]", f"repeats {field}[{seen[normal]}]")
            seen.setdefault(normal, i)
        return tuple(seen)

    def dependency_policy(self, field: str, value: int) -> DependencyPolicy | None:
        if value == 0:
            return None
        if value not in {p.value for p in DependencyPolicy}:
            self.bad(field, f"is not a known DependencyFailurePolicy: {value}")
            return None
        return DependencyPolicy(value)

    def _headers(self, field: str, headers: dict[str, str]) -> None:
        lim = self.limits
        if len(headers) > lim.max_headers:
            self.bad(field, f"has {len(headers)} entries, limit {lim.max_headers}")
        for key, value in headers.items():
            if not key:
                self.bad(field, "keys must not be empty")
            self.size(f"{field}[{key[:64]}]", key, lim.max_header_key_bytes)
            self.size(f"{field}[{key[:64]}]", value, lim.max_header_value_bytes)

    def backoff(self, field: str, b: job_pb2.BackoffPolicy) -> Backoff:
        """A given backoff policy; its unset members take the broker's defaults."""
        dft, lim = self.defaults, self.limits
        kind = b.kind or job_pb2.BACKOFF_KIND_EXPONENTIAL
        if int(kind) not in {k.value for k in BackoffKind}:
            self.bad(f"{field}.kind", f"is not a known BackoffKind: {b.kind}")
            kind = job_pb2.BACKOFF_KIND_EXPONENTIAL
        initial = dft.backoff_initial_ms
        if b.HasField("initial_delay"):  # an explicit 0 s asks for retries at once
            initial = self.duration_ms(
                f"{field}.initial_delay", b.initial_delay, 0, lim.max_backoff_ms
            )
        cap = self.option_ms(
            f"{field}.max_delay", b.max_delay, 1, lim.max_backoff_ms, dft.backoff_max_ms
        )
        if b.multiplier != 0:
            self.in_range(f"{field}.multiplier", b.multiplier, 1, 100)
        self.in_range(f"{field}.jitter", b.jitter, 0, 1)
        return Backoff(
            BackoffKind(kind), initial, cap, b.multiplier or dft.backoff_multiplier, b.jitter
        )

    def trace(self, field: str, t: job_pb2.TraceContext) -> TraceContext:
        if len(t.traceparent) > MAX_TRACEPARENT_BYTES:
            self.size(f"{field}.traceparent", t.traceparent, MAX_TRACEPARENT_BYTES)
        elif t.traceparent and not valid_traceparent(t.traceparent):
            self.bad(f"{field}.traceparent", TRACEPARENT_FORMAT)
        self.size(f"{field}.tracestate", t.tracestate, MAX_TRACESTATE_BYTES)
        self.size(f"{field}.baggage", t.baggage, MAX_BAGGAGE_BYTES)
        return TraceContext(t.traceparent, t.tracestate, t.baggage)

    def progress(self, field: str, p: job_pb2.Progress) -> Progress:
        lim = self.limits
        self.in_range(f"{field}.percent", p.percent, 0, 100)
        self.size(f"{field}.message", p.message, lim.max_progress_message_bytes)
        details = ""
        if p.HasField("details"):
            try:
                as_dict = json_format.MessageToDict(p.details)
            except ValueError:  # NaN or Infinity: not representable in JSON
                self.bad(f"{field}.details", "must hold only finite numbers")
                as_dict = {}
            details = json.dumps(as_dict, separators=(",", ":"))
            self.size(f"{field}.details", details, lim.max_progress_details_bytes)
        return Progress(p.percent, p.message, details)

    def heartbeat(self, field: str, r: pb.HeartbeatRequest) -> tuple[str, HeartbeatItem]:
        queue, seq = self.job_id(f"{field}job_id", r.job_id)
        token = self.token(f"{field}lease_token", r.lease_token)
        extension = self.option_ms(
            f"{field}lease_extension",
            r.lease_extension,
            self.limits.min_lease_ms,
            self.limits.max_lease_ms,
            0,
        )
        progress = self.progress(f"{field}progress", r.progress) if r.HasField("progress") else None
        return queue, HeartbeatItem(seq, token, extension, progress)

    def complete(self, field: str, r: pb.CompleteRequest) -> tuple[str, CompleteItem]:
        queue, seq = self.job_id(f"{field}job_id", r.job_id)
        token = self.token(f"{field}lease_token", r.lease_token)
        self.payload_size(f"{field}result", r.result)
        self.size(
            f"{field}result_content_type", r.result_content_type, self.limits.max_content_type_bytes
        )
        return queue, CompleteItem(seq, token, r.result, r.result_content_type)

    def release(self, field: str, r: pb.ReleaseLeaseRequest) -> tuple[str, ReleaseItem]:
        queue, seq = self.job_id(f"{field}job_id", r.job_id)
        token = self.token(f"{field}lease_token", r.lease_token)
        delay = self.option_ms(f"{field}delay", r.delay, 0, self.limits.max_delay_ms, 0)
        return queue, ReleaseItem(seq, token, delay)

    def fail_or_release(self, field: str, r: pb.FailRequest) -> tuple[str, FailItem | ReleaseItem]:
        """A Fail, or with the deprecated `release` flag the ReleaseLease it stands for."""
        if not r.release:
            return self.fail(field, r)
        queue, seq = self.job_id(f"{field}job_id", r.job_id)
        token = self.token(f"{field}lease_token", r.lease_token)
        self.size(f"{field}error.type", r.error.type, self.limits.max_key_bytes)
        self.size(f"{field}error.message", r.error.message, self.limits.max_error_message_bytes)
        delay = 0
        if r.HasField("retry_delay"):
            delay = self.duration_ms(
                f"{field}retry_delay", r.retry_delay, 0, self.limits.max_delay_ms
            )
        return queue, ReleaseItem(seq, token, delay)

    def fail(self, field: str, r: pb.FailRequest) -> tuple[str, FailItem]:
        queue, seq = self.job_id(f"{field}job_id", r.job_id)
        token = self.token(f"{field}lease_token", r.lease_token)
        if not r.HasField("rate_limit_delay"):  # with it, the error is optional
            if not r.HasField("error"):
                self.bad(f"{field}error", "is required")
            self.required(f"{field}error.type", r.error.type)
        self.size(f"{field}error.type", r.error.type, self.limits.max_key_bytes)
        self.size(f"{field}error.message", r.error.message, self.limits.max_error_message_bytes)
        delay = -1
        if r.HasField("retry_delay"):
            delay = self.duration_ms(
                f"{field}retry_delay", r.retry_delay, 0, self.limits.max_delay_ms
            )
        error = JobError(r.error.type, r.error.message, r.error.non_retryable)
        limited = 0
        if r.HasField("rate_limit_delay"):
            limited = self.duration_ms(
                f"{field}rate_limit_delay", r.rate_limit_delay, 1, MAX_RATE_LIMIT_DELAY_MS
            )
        return queue, FailItem(seq, token, error, delay, rate_limit_delay_ms=limited)


def _number(x: float) -> str:
    """A number as people write it: 100000000, not 1e+08; else every digit repr gives."""
    if isinstance(x, int) or (x.is_integer() and abs(x) < EXACT_INT):
        return str(int(x))
    return repr(x)


def _human(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
