"""Loads the Lua scripts: each file is one state transition, prefixed with lib.lua."""

from enum import IntEnum
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from ..domain.model import Outcome

# Every lua/*.lua file but lib.lua is one script, called by its file name.
SCRIPT_NAMES = tuple(
    sorted(
        f.name.removesuffix(".lua")
        for f in (resources.files(__package__) / "lua").iterdir()
        if f.name.endswith(".lua") and f.name != "lib.lua"
    )
)


class Code(IntEnum):
    """Result codes of the scripts; lib.lua defines the same numbers (a test checks)."""

    OK = 0
    NOT_FOUND = 1
    LEASE_LOST = 2
    JOB_FINISHED = 3

    @property
    def outcome(self) -> Outcome:
        return OUTCOMES[self]


OUTCOMES = {
    Code.OK: Outcome.OK,
    Code.NOT_FOUND: Outcome.NOT_FOUND,
    Code.LEASE_LOST: Outcome.LEASE_LOST,
    Code.JOB_FINISHED: Outcome.JOB_FINISHED,
}


def script_source(name: str) -> str:
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text()


# Scripts that run another script's body as a local function `run_<name>()`, which
# returns what that script returns: schedule_fire.lua enqueues its ticks' jobs through
# enqueue.lua itself, so a fired job is stored exactly as an enqueued one.
CALLS = {"schedule_fire": ("enqueue",)}


def full_source(name: str) -> str:
    called = "".join(
        f"local function run_{c}()\n{script_source(c)}\nend\n" for c in CALLS.get(name, ())
    )
    return script_source("lib") + "\n" + called + script_source(name)


def load_scripts(client: "Redis") -> dict[str, AsyncScript]:
    """Registers every script; redis-py calls them by SHA and reloads after NOSCRIPT."""
    return {name: client.register_script(full_source(name)) for name in SCRIPT_NAMES}
