"""Key and channel names. Every key of a queue carries the queue as a hash tag, so all
of a queue's keys live in one Redis Cluster slot and every script works unchanged there."""

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The key set every script receives as KEYS (order documented in lua/lib.lua)."""

    keys: tuple[str, ...]
    wake_channel: str
    events_channel: str


@lru_cache(maxsize=4096)
def queue_keys(prefix: str, queue: str) -> QueueKeys:
    base = f"{prefix}:{{{queue}}}:"
    names = ("seq", "ready", "scheduled", "active", "completed", "dead", "cancelled", "waiting")
    keys = (*(base + name for name in names), base + "job:", base + "events:", base + "idem:")
    return QueueKeys(keys=keys, wake_channel=base + "wake", events_channel=base + "events")


def job_key(prefix: str, queue: str, seq: int) -> str:
    return f"{prefix}:{{{queue}}}:job:{seq}"


def events_key(prefix: str, queue: str, seq: int) -> str:
    return f"{prefix}:{{{queue}}}:events:{seq}"


def set_key(prefix: str, queue: str, name: str) -> str:
    return f"{prefix}:{{{queue}}}:{name}"


def registry_key(prefix: str) -> str:
    """The set of known queue names, read by the maintenance loop. Not part of any
    queue's slot; only ever added to, outside the state-changing scripts."""
    return f"{prefix}:queues"
