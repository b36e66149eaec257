"""Error fingerprints, which group dead letters: errors that differ only in numbers, ids,
hex strings, addresses or quoted values share one. The fingerprint hashes the error type
with the message's template, so distinct error types never share a group.

The template replaces each variable part of a message with a placeholder (the ones
`DeadLetterGroup.message_template` documents):

    <str>   a quoted value: "..." '...' `...` (b'...' and the like too; an apostrophe
            inside a word, as in "can't", opens nothing)
    <addr>  a URL, an e-mail address, a MAC address, or a token of 25+ letters and
            digits (both): base58 addresses (Bitcoin, Solana), and long ids alike
    <uuid>  a UUID
    <ip>    an IPv4 address (with a port or prefix length) or an IPv6 address
    <hex>   a hex string (0x..., or 6+ hex digits mixing letters and digits) or an id: a
            token of letters and digits (both) that is 16-24 long, or 8+ long switching
            between letters and digits at least three times
    <n>     any other number (sign, decimals, thousands separators and exponent included)

Tokens are runs of letters and digits: `_`, `-`, `.`, `:` and `/` separate them, so
`ch_3MqMBn2eZvKYlo2C0f6Wgqxa` is `ch_<hex>`. Whitespace is collapsed. docs/dead-letters.md
shows examples; tests/test_fingerprint.py holds the rules."""

import hashlib
import re
from dataclasses import replace
from functools import lru_cache

from .model import JobError

_TOKEN_START = r"(?<![A-Za-z0-9])"
_TOKEN_END = r"(?![A-Za-z0-9])"
_H4 = r"[0-9A-Fa-f]{1,4}"

# One alternation, tried left to right at each position of the message: where several
# rules could start at the same place, the first listed wins (a UUID is not read as
# hex and numbers). Every rule but `id` always stands for its placeholder.
RULES: tuple[tuple[str, str, str], ...] = (
    (
        "str",
        "<str>",
        r'"(?:[^"\\\n]|\\.)*"'
        rf"|{_TOKEN_START}(?:[bBrRuUfF]{{1,2}})?'(?:[^'\\\n]|\\.)*'{_TOKEN_END}"
        r"|`[^`\n]*`",
    ),
    ("url", "<addr>", r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]*[^\s\"'<>.,;:!?)\]}]"),
    ("email", "<addr>", r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"),
    (
        "uuid",
        "<uuid>",
        _TOKEN_START + r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}" + _TOKEN_END,
    ),
    (
        "mac",
        "<addr>",
        r"(?<![A-Za-z0-9:-])(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![A-Za-z0-9:-])",
    ),
    (
        "ip6",
        "<ip>",
        # Full (eight groups) or compressed (with "::" and a digit somewhere), optionally
        # in brackets with a port; "12:30:45" and "std::vector" are not addresses.
        rf"(?<![A-Za-z0-9:])\[?(?:(?:{_H4}:){{7}}{_H4}"
        rf"|(?=[0-9A-Fa-f:]*[0-9])(?:{_H4}(?::{_H4}){{0,6}})?::(?:{_H4}(?::{_H4}){{0,6}})?)"
        r"(?:%[A-Za-z0-9]+)?(?:\](?::\d{1,5})?)?(?![A-Za-z0-9]|:[0-9A-Fa-f:])",
    ),
    (
        "ip4",
        "<ip>",
        _TOKEN_START + r"(?:\d{1,3}\.){3}\d{1,3}(?:/\d{1,2})?(?::\d{1,5})?" + _TOKEN_END,
    ),
    ("hex0x", "<hex>", _TOKEN_START + r"0[xX][0-9A-Fa-f]+" + _TOKEN_END),
    (
        "hex",
        "<hex>",
        _TOKEN_START + r"(?=[0-9A-Fa-f]*[0-9])(?=[0-9A-Fa-f]*[A-Fa-f])[0-9A-Fa-f]{6,}" + _TOKEN_END,
    ),
    # Letters and digits mixed: an id or address, or a word with a number in it (_id).
    ("id", "<hex>", _TOKEN_START + r"(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{8,}"),
    ("n", "<n>", r"(?:(?<![A-Za-z0-9.])[-+])?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?"),
)
PLACEHOLDERS = {name: placeholder for name, placeholder, _ in RULES}
# No rule starts at whitespace, nor in a word of letters that ends before anything a
# rule could continue with (most of a message): one cheap look rules those places out.
_CANDIDATE = r"(?=[^\sA-Za-z]|[A-Za-z]+(?:[^\sA-Za-z,;!?()\[\]{}<>=/\\|&*^%$#~]))"
_PATTERN = re.compile(
    _CANDIDATE + "(?:" + "|".join(f"(?P<{name}>{rule})" for name, _, rule in RULES) + ")"
)
_DIGITS = re.compile(r"\d+")
_LETTER_DIGIT = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")

MAX_TEMPLATE_CHARS = 1_000
MAX_SCANNED_CHARS = 4 * MAX_TEMPLATE_CHARS
ADDRESS_MIN_CHARS = 25  # a letters-and-digits token this long is an address (or an id)
ID_MIN_CHARS = 16  # one this long is an id
ID_MIN_SWITCHES = 3  # and so is one from 8 characters on that switches this often


def _id(token: str) -> str:
    """The placeholder of a token of letters and digits, both present. Base58 addresses
    (Bitcoin's 26-35 characters, Solana's 32-44) and long ids look alike, so length
    alone decides, which keeps a given id format in one class: an alphabet test would
    call a random base62 id an address one time in seven. Short tokens are ids when
    they switch between letters and digits often (`ord8f3k2j`), else words with a
    number in them (`sha256sum`, `Python311`), whose digits become <n>."""
    if len(token) >= ADDRESS_MIN_CHARS:
        return "<addr>"
    if len(token) >= ID_MIN_CHARS or len(_LETTER_DIGIT.findall(token)) >= ID_MIN_SWITCHES:
        return "<hex>"
    return _DIGITS.sub("<n>", token)


def _placeholder(found: re.Match[str]) -> str:
    kind = found.lastgroup or "n"
    if kind == "id":
        return _id(found.group())
    return PLACEHOLDERS[kind]


def template(message: str) -> str:
    """The message with its variable parts replaced, whitespace collapsed. Applying it
    to a template changes nothing (placeholders hold no digits, quotes or separators)."""
    out = _PATTERN.sub(_placeholder, message[:MAX_SCANNED_CHARS])
    return " ".join(out.split())[:MAX_TEMPLATE_CHARS]


@lru_cache(maxsize=1024)
def fingerprint(error_type: str, message: str) -> tuple[str, str]:
    """The group id (16 hex digits) and the message template of an error. The type is
    hashed with its length in front, so no (type, template) pair can pass for another.
    Cached: a failing dependency repeats the same few messages."""
    shape = template(message)
    kind = error_type.encode()
    digest = hashlib.blake2b(digest_size=8)
    digest.update(len(kind).to_bytes(4, "big"))
    digest.update(kind)
    digest.update(shape.encode())
    return digest.hexdigest(), shape


def fingerprinted(error: JobError) -> tuple[JobError, str]:
    """The error with its fingerprint set, and its template."""
    digest, shape = fingerprint(error.type, error.message)
    return replace(error, fingerprint=digest), shape


FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}", re.ASCII)


def is_fingerprint(value: str) -> bool:
    """Whether `value` has the form of a fingerprint (as DeadLetterGroup gives it)."""
    return FINGERPRINT_RE.fullmatch(value) is not None
