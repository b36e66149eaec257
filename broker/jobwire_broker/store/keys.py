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
    keys = tuple(base + name for name in KEY_NAMES)
    return QueueKeys(keys=keys, wake_channel=base + "wake", events_channel=base + "events")


# The order of KEYS in every script (lua/lib.lua's K table; a test holds the two equal).
# Names ending in ":" are prefixes of per-item keys (job:<seq>, worker:<id>, ...).
KEY_NAMES = (
    "seq",
    "ready",
    "scheduled",
    "active",
    "completed",
    "dead",
    "cancelled",
    "waiting",
    "job:",
    "events:",
    "idem:",
    "settings",
    "paused",
    "qevents",
    "stats:",
    "workers",
    "worker:",
    "dlgroups",
    "dlg:",
    "dlgmeta:",
    "expired",
    "deadlines",
    "blocked",
    "dependants:",
    "resolve",
    "schedules",
    "schedule:",
    "group:",
)

# The sorted set that holds the jobs of a state, by KEY_NAMES name: the state's own name,
# but for waiting jobs (the name "waiting" was taken by the long-poll flag first).
STATE_SETS = {"waiting": "blocked"}


def state_set(state: str) -> str:
    """The KEY_NAMES name of the sorted set of jobs in `state`."""
    return STATE_SETS.get(state, state)


def job_key(prefix: str, queue: str, seq: int) -> str:
    return f"{prefix}:{{{queue}}}:job:{seq}"


def events_key(prefix: str, queue: str, seq: int) -> str:
    return f"{prefix}:{{{queue}}}:events:{seq}"


def set_key(prefix: str, queue: str, name: str) -> str:
    return f"{prefix}:{{{queue}}}:{name}"


def queue_key(prefix: str, queue: str, name: str) -> str:
    """One key of a queue's set by its KEY_NAMES name, e.g. "settings" or "worker:" + id."""
    return f"{prefix}:{{{queue}}}:{name}"


def registry_channel(prefix: str) -> str:
    """Published when a queue is deleted, so replicas forget they registered it."""
    return f"{prefix}:queues:changed"


def registry_key(prefix: str) -> str:
    """The set of known queue names, read by the maintenance loop. Not part of any
    queue's slot; only ever added to, outside the state-changing scripts."""
    return f"{prefix}:queues"


def schedule_registry_key(prefix: str) -> str:
    """The hash of every schedule's name -> its queue, for listing and for the ticker to
    find the queues that have schedules. Not part of any queue's slot."""
    return f"{prefix}:schedules"
