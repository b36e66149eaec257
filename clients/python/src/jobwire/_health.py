"""How the worker rides out outages: retry delays (capped exponential backoff with
jitter), and a record of which of its calls are failing, logged once per outage and
published as Worker.health."""

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from ._errors import JobwireError

log = logging.getLogger("jobwire.worker")

# Codes that retrying will not fix (a bad queue name, missing credentials, a broker that
# lacks the RPC): still retried, in case the deployment is fixed, but slowly.
PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
PERMANENT_RETRY_S = 30.0


def permanent(error: BaseException) -> bool:
    return isinstance(error, JobwireError) and error.code in PERMANENT


def describe(error: BaseException) -> str:
    """One line for logs and health: the status code and reason, then the message."""
    if isinstance(error, JobwireError):
        reason = (
            f" ({error.reason})"
            if error.reason not in ("", "ERROR_REASON_UNSPECIFIED", error.code.name)
            else ""
        )
        return f"{error.code.name}{reason}: {error.message}"
    return f"{type(error).__name__}: {error}"


@dataclass
class RetryBackoff:
    """Delays between retries of one failing call: `initial` doubling up to `cap`, each
    drawn from its upper half (never a hot loop, never in lockstep with other workers).
    A RetryInfo delay from the broker is honoured when longer."""

    initial_s: float = 0.1
    cap_s: float = 2.0
    failures: int = 0

    def next(self, error: BaseException) -> float:
        if permanent(error):
            return PERMANENT_RETRY_S
        ceiling = min(self.cap_s, self.initial_s * 2 ** min(self.failures, 30))
        self.failures += 1
        hint = error.retry_after if isinstance(error, JobwireError) else None
        return max(random.uniform(ceiling / 2, ceiling), min(hint or 0.0, 60.0))

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True)
class WorkerHealth:
    """What `Worker.health` returns: whether the worker's calls to the broker succeed.

    `healthy` is false while any part is failing; `failing` names each one ("lease
    <queue>", "heartbeat", "settle") with its latest error. `since` is when the worker
    last changed between healthy and unhealthy (or was created). `last_error` is the latest
    failure, kept after recovery ("<part>: <error>"), None if nothing ever failed."""

    healthy: bool
    since: datetime
    last_error: str | None
    failing: Mapping[str, str] = field(default_factory=dict)


class HealthTracker:
    """Failures per part of the worker. A part that starts failing is logged once with
    its error (ERROR for permanent ones, else WARNING); its recovery once, with how long
    it lasted. Retries in between log only at DEBUG."""

    def __init__(self) -> None:
        self._failing: dict[str, tuple[str, float, int]] = {}  # error, since, failures
        self._since = datetime.now(UTC)
        self._last_error: str | None = None

    def failed(self, part: str, error: BaseException, retry_in_s: float) -> None:
        text = describe(error)
        self._last_error = f"{part}: {text}"
        known = self._failing.get(part)
        if known is not None:
            self._failing[part] = (text, known[1], known[2] + 1)
            log.debug("%s failed again (%s); retrying in %.1fs", part, text, retry_in_s)
            return
        if not self._failing:
            self._since = datetime.now(UTC)
        self._failing[part] = (text, time.monotonic(), 1)
        exc_info = None if isinstance(error, JobwireError) else error  # an SDK bug: show it
        if permanent(error):
            log.error(
                "%s failing: %s; retrying every %gs, but this needs fixing",
                part,
                text,
                retry_in_s,
                exc_info=exc_info,
            )
        else:
            log.warning("%s failing: %s; retrying with backoff", part, text, exc_info=exc_info)

    def ok(self, part: str) -> None:
        known = self._failing.pop(part, None)
        if known is None:
            return
        _, started, failures = known
        log.info(
            "%s recovered after %.1fs (%d failed calls)",
            part,
            time.monotonic() - started,
            failures,
        )
        if not self._failing:
            self._since = datetime.now(UTC)

    def snapshot(self) -> WorkerHealth:
        failing = {part: error for part, (error, _, _) in self._failing.copy().items()}
        return WorkerHealth(not failing, self._since, self._last_error, failing)


__all__ = ["WorkerHealth"]
