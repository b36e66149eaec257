"""Broker settings: flags, with matching JOBWIRE_* environment variables as defaults."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from .domain.limits import Defaults, Limits
from .domain.maintenance import MaintenanceSettings
from .embedded import DEFAULT_FSYNC


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:50051"
    # Empty: start an embedded Valkey with its data (AOF) in data_dir.
    redis_url: str = ""
    data_dir: Path = Path(".jobwire/data")
    key_prefix: str = "jw"
    redis_max_connections: int = 64
    redis_timeout_s: float = 5.0
    grace_s: float = 10.0
    embedded_restart_delay_s: float = 1.0
    # appendfsync of the embedded Valkey: "always" (fsync before each reply) or "everysec".
    embedded_fsync: str = DEFAULT_FSYNC
    health_interval_s: float = 0.5
    metrics_port: int = 0  # Prometheus /metrics; 0: off
    # Where `jobwire serve` declares its bound ports once it serves (ready.py); None: nowhere.
    ready_file: Path | None = None
    # A queue settings file (queue_file.py) applied at start-up; None: none.
    queues_file: Path | None = None
    # A schedules file (schedule_file.py) applied at start-up; None: none.
    schedules_file: Path | None = None
    limits: Limits = field(default_factory=Limits)
    defaults: Defaults = field(default_factory=Defaults)
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)

    @property
    def max_message_bytes(self) -> int:
        """gRPC message limit: room for a full batch of largest payloads, capped at 512 MiB."""
        return min(512 << 20, self.limits.max_payload_bytes * 4 + (4 << 20))


def env(name: str, default: str) -> str:
    return os.environ.get(f"JOBWIRE_{name}", default)
