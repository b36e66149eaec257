"""What "no acknowledged job is ever lost" needs from an external Redis, checked once at
startup: one log line when the server's settings can lose acknowledged jobs. Managed
services often disable CONFIG; then there is nothing to check and nothing is said."""

import asyncio
import logging
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

SETTINGS = ("appendonly", "appendfsync", "no-appendfsync-on-rewrite", "maxmemory-policy")


def problems(config: Mapping[str, str]) -> list[str]:
    """Settings in `config` (CONFIG GET's names and values) that can lose acknowledged
    jobs. A setting the server did not report is not judged."""
    found = []
    aof = config.get("appendonly")
    if aof == "no":
        found.append("appendonly is no (a restart loses every job since the last snapshot)")
    if aof == "yes" and config.get("appendfsync") == "no":
        found.append("appendfsync is no (a machine crash loses what the OS has not flushed)")
    if aof == "yes" and config.get("no-appendfsync-on-rewrite") == "yes":
        found.append("no-appendfsync-on-rewrite is yes (no fsync while the AOF is rewritten)")
    policy = config.get("maxmemory-policy")
    if policy not in (None, "noeviction"):
        found.append(f"maxmemory-policy is {policy} (eviction deletes jobs; use noeviction)")
    return found


async def read_settings(redis: Redis, timeout_s: float = 2.0) -> dict[str, str] | None:
    """The server's SETTINGS, or None when they cannot be read: CONFIG disabled, renamed
    or not permitted to this user, or the server unreachable."""
    config: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_s):
            for name in SETTINGS:
                reply = await redis.config_get(name)
                config.update({_text(k): _text(v) for k, v in reply.items()})
    except (RedisError, OSError, TimeoutError):
        return None
    return config


async def warn_if_not_durable(redis: Redis) -> None:
    """Logs one WARNING naming what can lose acknowledged jobs, or one INFO line when
    only `appendfsync everysec` leaves a window; nothing when CONFIG GET is refused."""
    config = await read_settings(redis)
    if config is None:
        log.debug("cannot read the Redis settings (CONFIG GET refused?): durability unchecked")
        return
    found = problems(config)
    if found:
        log.warning("Redis can lose acknowledged jobs: %s", "; ".join(found))
    elif config.get("appendfsync") == "everysec":
        log.info(
            "Redis has appendfsync everysec: a machine crash can lose the last second or "
            "so of acknowledged jobs (appendfsync always closes the window)"
        )


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
