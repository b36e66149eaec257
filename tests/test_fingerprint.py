"""Error fingerprints (domain/fingerprint.py): the template rules, table by table, and
properties checked over many generated messages (a seeded generator: `hypothesis` is
not a dependency): messages that differ only in their variable parts share a
fingerprint, distinct error types never do, and templating a template changes nothing."""

import random
import string
import uuid
from collections.abc import Callable

import pytest
from jobwire_broker.domain.fingerprint import (
    MAX_TEMPLATE_CHARS,
    fingerprint,
    fingerprinted,
    is_fingerprint,
    template,
)
from jobwire_broker.domain.model import JobError

# -- the rules, one table ------------------------------------------------------------

CASES = [
    # numbers
    ("user 12345 not found", "user <n> not found"),
    ("took 1.5ms of 2,000ms, -3 left, 1e-5", "took <n>ms of <n>ms, <n> left, <n>"),
    ("retry-after: 30", "retry-after: <n>"),
    ("x86_64 on core 7", "x<n>_<n> on core <n>"),
    ("2024-01-15T10:30:00.123Z deadline", "<n>-<n>-<n>T<n>:<n>:<n>Z deadline"),
    # quoted values (an apostrophe inside a word opens nothing)
    ("KeyError: 'user_42'", "KeyError: <str>"),
    ("can't connect to 'db-1' (it's down)", "can't connect to <str> (it's down)"),
    ('field "email" is "bob"', "field <str> is <str>"),
    ("unexpected `;` and b'\\x00ab'", "unexpected <str> and <str>"),
    ('JSON {"id": 12}', "JSON {<str>: <n>}"),
    # UUIDs, hex strings, ids
    ("request 550e8400-e29b-41d4-a716-446655440000 timed out", "request <uuid> timed out"),
    ("object at 0x7f3a2b1c freed", "object at <hex> freed"),
    ("commit a3f5c2e broke the build", "commit <hex> broke the build"),
    ("sha 9b74c9897bac770ffc029102a200c5de mismatch", "sha <hex> mismatch"),
    ("order ord8f3k2j failed", "order <hex> failed"),
    ("charge ch_3MqMBn2eZvKYlo2C0f6Wgqxa declined", "charge ch_<hex> declined"),
    ("key AKIAIOSFODNN7EXAMPLE denied", "key <hex> denied"),
    ("ulid 01ARZ3NDEKTSV4RRFFQ69G5FAV seen", "ulid <addr> seen"),
    ("file /tmp/tmpab12cd3/x.txt missing", "file /tmp/<hex>/x.txt missing"),
    # words with numbers in them stay words
    ("sha256sum failed on Python311, utf8mb4", "sha<n>sum failed on Python<n>, utf<n>mb<n>"),
    # addresses
    ("connection to 10.0.0.1:5432 refused", "connection to <ip> refused"),
    ("subnet 192.168.0.0/16 full", "subnet <ip> full"),
    ("host fe80::1ff:fe23:4567:890a unreachable", "host <ip> unreachable"),
    ("host [::1]:8080 down", "host <ip> down"),
    ("peer 2001:0db8:85a3:0000:0000:8a2e:0370:7334 gone", "peer <ip> gone"),
    ("at 12:30:45 std::vector overflow", "at <n>:<n>:<n> std::vector overflow"),
    ("in Face::add", "in Face::add"),
    ("GET https://api.example.com/v1/users/123?x=1. failed", "GET <addr>. failed"),
    ("mail to bob.smith+x@example.co.uk bounced", "mail to <addr> bounced"),
    ("device 00:1A:2B:3C:4D:5E unknown", "device <addr> unknown"),
    ("tx 0x5f3a9c2e11b4d1a8f0e7c6b5a4d3c2b1a0f9e8d7 reverted", "tx <hex> reverted"),
    ("wallet 7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU empty", "wallet <addr> empty"),
    ("pay to 1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "pay to <addr>"),
    # whitespace and words alone
    ("  connection\n\trefused  ", "connection refused"),
    ("deadbeef cafe facade", "deadbeef cafe facade"),
    ("", ""),
]


@pytest.mark.parametrize(("message", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_template_rules(message: str, expected: str) -> None:
    assert template(message) == expected


def test_a_template_is_its_own_template() -> None:
    for message, _ in CASES:
        assert template(template(message)) == template(message)


def test_templates_are_bounded() -> None:
    long = " ".join(f"word{i} 'value {i}'" for i in range(5_000))
    shape = template(long)
    assert len(shape) <= MAX_TEMPLATE_CHARS
    assert shape.startswith("word<n> <str> word<n> <str>")


def test_the_fingerprint_is_16_hex_digits_of_type_and_template() -> None:
    digest, shape = fingerprint("TimeoutError", "upstream 10.0.0.7 timed out after 3000 ms")
    assert is_fingerprint(digest) and shape == "upstream <ip> timed out after <n> ms"
    assert fingerprint("TimeoutError", "upstream 10.9.8.7 timed out after 12 ms")[0] == digest
    assert fingerprint("ConnectionError", "upstream 10.0.0.7 timed out after 3000 ms")[0] != digest


def test_the_type_cannot_run_into_the_template() -> None:
    # Hashing "type \0 template" would give these two the same input.
    assert fingerprint("A\0B", "c")[0] != fingerprint("A", "B\0c")[0]
    assert fingerprint("AB", "c")[0] != fingerprint("A", "Bc")[0]


def test_fingerprinted_sets_the_errors_fingerprint() -> None:
    error, shape = fingerprinted(JobError("KeyError", "missing 'k1'", True))
    assert shape == "missing <str>"
    assert error == JobError("KeyError", "missing 'k1'", True, fingerprint("KeyError", shape)[0])


def test_is_fingerprint() -> None:
    assert is_fingerprint("0123456789abcdef")
    for bad in ("", "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "g" * 16):
        assert not is_fingerprint(bad)


# -- properties over generated messages ----------------------------------------------

PROSE = (
    "connection refused timeout while calling upstream failed for user order payment"
    " wallet address invalid missing key record lock held by worker retry later host"
    " could not parse response from database table row column value limit exceeded"
)
WORDS = tuple(PROSE.split())
SEPARATORS = (" ", " ", " ", ": ", ", ", " (", ") ", " = ", " / ", " - ")

Gen = Callable[[random.Random], str]


def _number(r: random.Random) -> str:
    return r.choice(
        [
            str(r.randint(0, 10**12)),
            f"{r.uniform(-1e6, 1e6):.{r.randint(1, 4)}f}",
            f"{r.randint(1, 999)},{r.randint(100, 999)}",
            f"-{r.randint(1, 99)}",
            f"{r.randint(1, 9)}e{r.randint(1, 30)}",
        ]
    )


def _hex(r: random.Random) -> str:
    digits = [r.choice("0123456789"), r.choice("abcdef")]
    digits += [r.choice("0123456789abcdef") for _ in range(r.randint(4, 62))]
    r.shuffle(digits)
    return "".join(digits)


def _token(length: int, alphabet: str) -> Gen:
    """Random tokens of one format: `length` characters of `alphabet`, a digit and a
    letter among them (what an id or address format looks like)."""

    def make(r: random.Random) -> str:
        chars = [r.choice(string.digits), r.choice(string.ascii_letters)]
        chars += [r.choice(alphabet) for _ in range(length - 2)]
        r.shuffle(chars)
        return "".join(chars)

    return make


BASE62 = string.ascii_letters + string.digits
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _quoted(r: random.Random) -> str:
    inner = "".join(r.choice(BASE62 + " _-.") for _ in range(r.randint(0, 12)))
    return r.choice(['"{}"', "'{}'", "`{}`"]).format(inner)


def _ip4(r: random.Random) -> str:
    ip = ".".join(str(r.randint(0, 255)) for _ in range(4))
    return ip + r.choice(["", f":{r.randint(1, 65535)}"])


def _ip6(r: random.Random) -> str:
    """Full or compressed, with a digit (the rule's: `bad::cafe` could be code)."""
    groups = [f"{r.randint(0, 0xFFFF):x}" for _ in range(8)]
    groups[0] = str(r.randint(1, 9999))
    if r.random() < 0.5:
        return ":".join(groups)
    return ":".join(groups[: r.randint(1, 6)]) + "::" + groups[7]


def _url(r: random.Random) -> str:
    return f"https://{r.choice(WORDS)}.example.com/{r.randint(1, 10**6)}?q={_number(r)}"


def _email(r: random.Random) -> str:
    return f"{r.choice(WORDS)}.{r.randint(1, 99)}@example.org"


def _base58_address(r: random.Random) -> str:
    return _token(r.randint(26, 44), BASE58)(r)  # Bitcoin 26-35, Solana 32-44


# What each placeholder stands for: formats, each a factory of one format's values (a
# slot of a message keeps its format, as a real message does: "differ only in ids"
# means other ids of the same kind).
FORMATS: dict[str, list[Callable[[random.Random], Gen]]] = {
    "<n>": [lambda r: _number],
    "<hex>": [
        lambda r: _hex,
        lambda r: lambda r2: "0x" + _hex(r2),
        lambda r: _token(r.randint(16, 24), BASE62),
    ],
    "<uuid>": [lambda r: lambda r2: str(uuid.UUID(int=r2.getrandbits(128)))],
    "<ip>": [lambda r: _ip4, lambda r: _ip6],
    "<addr>": [
        lambda r: _base58_address,
        lambda r: _token(r.randint(25, 40), BASE62),
        lambda r: _url,
        lambda r: _email,
    ],
    "<str>": [lambda r: _quoted],
}


def _shape(r: random.Random) -> list[tuple[str, Gen | None]]:
    """A message's parts: fixed words and separators, and variable slots (placeholder,
    format)."""
    parts: list[tuple[str, Gen | None]] = []
    for i in range(r.randint(1, 12)):
        if i:
            parts.append((r.choice(SEPARATORS), None))
        if r.random() < 0.4:
            placeholder = r.choice(list(FORMATS))
            parts.append((placeholder, r.choice(FORMATS[placeholder])(r)))
        else:
            parts.append((r.choice(WORDS), None))
    return parts


def _instance(shape: list[tuple[str, Gen | None]], r: random.Random) -> str:
    return "".join(text if make is None else make(r) for text, make in shape)


def test_messages_that_differ_only_in_variable_parts_share_a_template() -> None:
    r = random.Random(10)
    for _ in range(2_000):
        shape = _shape(r)
        first, second = _instance(shape, r), _instance(shape, r)
        expected = " ".join("".join(text for text, _ in shape).split())
        assert template(first) == expected, (shape, first)
        assert template(second) == expected, (shape, second)
        assert fingerprint("E", first)[0] == fingerprint("E", second)[0]


def test_distinct_error_types_never_share_a_fingerprint() -> None:
    r = random.Random(11)
    types = {"".join(r.choice(string.ascii_letters + "._:") for _ in range(12)) for _ in range(300)}
    types |= {"TimeoutError", "timeouterror", "TimeoutError ", "LEASE_EXPIRED"}
    for _ in range(20):
        message = _instance(_shape(r), r)
        prints = {fingerprint(t, message)[0] for t in types}
        assert len(prints) == len(types)


def test_templating_is_idempotent_on_generated_messages() -> None:
    r = random.Random(12)
    for _ in range(2_000):
        message = _instance(_shape(r), r)
        assert template(template(message)) == template(message), message
