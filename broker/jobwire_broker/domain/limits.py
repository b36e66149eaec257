"""Bounds on what a request may ask for. Defaults that do not bite later."""

from dataclasses import dataclass

SECOND_MS = 1_000
DAY_MS = 86_400 * SECOND_MS
# What a Lease reply may carry unless the caller says more: gRPC's default receive
# limit in every language, so a client with default settings can always read it.
DEFAULT_REPLY_BYTES = 4 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload_bytes: int = 1 << 20
    max_batch: int = 1_000
    max_wait_ms: int = 60 * SECOND_MS
    max_delay_ms: int = 365 * DAY_MS
    min_lease_ms: int = SECOND_MS
    max_lease_ms: int = 12 * 3_600 * SECOND_MS
    max_timeout_ms: int = 7 * DAY_MS
    max_backoff_ms: int = 7 * DAY_MS
    max_idempotency_window_ms: int = 30 * DAY_MS
    max_attempts: int = 1_000
    max_priority: int = 1_000
    max_headers: int = 64
    max_header_key_bytes: int = 256
    max_header_value_bytes: int = 4_096
    max_content_type_bytes: int = 128
    max_key_bytes: int = 256
    max_error_message_bytes: int = 8_192
    max_progress_message_bytes: int = 1_024
    max_progress_details_bytes: int = 16_384


@dataclass(frozen=True, slots=True)
class Defaults:
    max_attempts: int = 3
    lease_ms: int = 30 * SECOND_MS
    idempotency_window_ms: int = DAY_MS
    backoff_initial_ms: int = SECOND_MS
    backoff_max_ms: int = 3_600 * SECOND_MS
    backoff_multiplier: float = 2.0
