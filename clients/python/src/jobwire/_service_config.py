"""The one gRPC service config shipped with the protos (protos/jobwire/v1/
service_config.json, copied into this package by `make generate`): retries and
timeouts per method, the same in every Jobwire client."""

import json
from functools import lru_cache
from importlib import resources
from typing import Any

SERVICE = "jobwire.v1.BrokerService"


@lru_cache(maxsize=1)
def document() -> str:
    """The service config as JSON, for the `grpc.service_config` channel option."""
    return (resources.files(__package__) / "service_config.json").read_text()


def retry_policy(method: str, config: str | None = None) -> dict[str, Any] | None:
    """The retryPolicy of `method`, or None when the config retries it not at all."""
    for entry in json.loads(config or document())["methodConfig"]:
        if {"service": SERVICE, "method": method} in entry["name"]:
            policy: dict[str, Any] | None = entry.get("retryPolicy")
            return policy
    return None


def seconds(duration: str) -> float:
    """A service config duration ("0.1s") in seconds."""
    return float(duration.removesuffix("s"))
