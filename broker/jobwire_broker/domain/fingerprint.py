"""Error fingerprints, which group dead letters: errors that differ only in numbers, ids,
hex strings, addresses or quoted values share one. The fingerprint hashes the error type
with the message's template, so distinct error types never share a group."""

import hashlib
import re
from dataclasses import replace

from .model import JobError

# Replaced in this order: the wider patterns first, so a UUID is not read as numbers.
PLACEHOLDERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("<str>", re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")),
    ("<url>", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s\"'<>]+", re.IGNORECASE)),
    ("<email>", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    (
        "<uuid>",
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
    ),
    ("<ip>", re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b")),
    ("<ip>", re.compile(r"\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b", re.IGNORECASE)),
    ("<hex>", re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE)),
    # Base58 (Bitcoin, Solana) addresses and other long ids: 20+ letters and digits
    # with at least one digit.
    ("<addr>", re.compile(r"\b(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{20,}\b")),
    ("<hex>", re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,}\b", re.IGNORECASE)),
    ("<n>", re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?", re.IGNORECASE)),
)
MAX_TEMPLATE_CHARS = 1_000


def template(message: str) -> str:
    """The message with its variable parts replaced, whitespace collapsed."""
    out = message[: MAX_TEMPLATE_CHARS * 4]
    for placeholder, pattern in PLACEHOLDERS:
        out = pattern.sub(placeholder, out)
    return " ".join(out.split())[:MAX_TEMPLATE_CHARS]


def fingerprint(error_type: str, message: str) -> tuple[str, str]:
    """The group id (16 hex digits) and the message template of an error."""
    shape = template(message)
    digest = hashlib.blake2b(f"{error_type}\0{shape}".encode(), digest_size=8).hexdigest()
    return digest, shape


def fingerprinted(error: JobError) -> tuple[JobError, str]:
    """The error with its fingerprint set, and its template."""
    digest, shape = fingerprint(error.type, error.message)
    return replace(error, fingerprint=digest), shape
