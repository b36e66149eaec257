"""The job schema is declared once (store/schema.py) and mirrored by lib.lua: these
tests fail when one side changes alone, or when a script names a field outside it."""

import re
from pathlib import Path

import pytest
from jobwire_broker.domain.model import Backoff, BackoffKind, JobError, NewJob, Progress
from jobwire_broker.store import schema
from jobwire_broker.store.scripts import SCRIPT_NAMES

LUA = Path(__file__).resolve().parent.parent / "broker/jobwire_broker/store/lua"
LIB = (LUA / "lib.lua").read_text()


def lua_table(name: str) -> dict[str, str]:
    """`local NAME = {key = 'value', ...}` of lib.lua, as a dict."""
    found = re.search(rf"^local {name} = \{{(.*?)\}}\n", LIB, re.S | re.M)
    assert found, f"lib.lua has no table {name}"
    body = re.sub(r"--[^\n]*", "", found.group(1))
    return dict(re.findall(r"(\w+) = '([^']*)'", body))


def scripts() -> dict[str, str]:
    return {name: (LUA / f"{name}.lua").read_text() for name in ("lib", *SCRIPT_NAMES)}


def test_lua_job_fields_are_the_schema() -> None:
    assert sorted(lua_table("J").values()) == sorted(schema.SCRIPT_FIELDS)


def test_lua_event_fields_are_the_schema() -> None:
    assert sorted(lua_table("E").values()) == sorted(schema.EVENT_FIELDS)


def test_lua_queue_event_and_worker_fields_are_the_schema() -> None:
    assert sorted(lua_table("QE").values()) == sorted(schema.QUEUE_EVENT_FIELDS)
    assert sorted(lua_table("W").values()) == sorted(schema.WORKER_FIELDS)


def test_lua_keys_are_the_declared_key_names() -> None:
    from jobwire_broker.store.keys import KEY_NAMES, queue_keys

    found = re.search(r"^local K = \{(.*?)\}\n", LIB, re.S | re.M)
    assert found
    order = dict(re.findall(r"(\w+) = KEYS\[(\d+)\]", found.group(1)))
    by_index = {int(i): name for name, i in order.items()}
    assert [by_index[i + 1] for i in range(len(KEY_NAMES))] == [n.rstrip(":") for n in KEY_NAMES]
    assert len(queue_keys("p", "q").keys) == len(KEY_NAMES)


def test_the_defaulted_options_are_what_enqueue_lua_fills() -> None:
    text = (LUA / "enqueue.lua").read_text()
    j = lua_table("J")
    named = re.findall(r"J\.(\w+)", text[text.index("local OPTIONS") : text.index("local queue")])
    assert sorted(j[n] for n in named) == sorted(schema.DEFAULTED_FIELDS)


def test_script_fields_are_job_fields() -> None:
    assert set(schema.SCRIPT_FIELDS) <= set(schema.JOB_FIELDS)
    assert len(set(schema.JOB_FIELDS)) == len(schema.JOB_FIELDS)


@pytest.mark.parametrize("name", ["lib", *SCRIPT_NAMES])
def test_scripts_name_fields_only_through_the_tables(name: str) -> None:
    text = re.sub(r"--[^\n]*", "", scripts()[name])
    j, e = lua_table("J"), lua_table("E")
    for used in re.findall(r"\bJ\.(\w+)", text):
        assert used in j, f"{name}.lua uses J.{used}, which lib.lua's J does not declare"
    for used in re.findall(r"\bE\.(\w+)", text):
        assert used in e, f"{name}.lua uses E.{used}, which lib.lua's E does not declare"
    # Hash commands name their fields through J, never with a literal.
    literal = re.findall(r"'H(?:GET|SET|MGET|DEL|INCRBY|STRLEN)', [^,\n]+, '(\w[\w.]*)'", text)
    assert literal == [], f"{name}.lua names hash fields with literals: {literal}"
    # fields() and check_lease() take J keys.
    for call in re.findall(r"(?:fields|check_lease)\([^{]*\{([^}]*)\}", text):
        for key in re.findall(r"'(\w+)'", call):
            assert key in j, f"{name}.lua asks for field key {key!r}, not in J"


def test_a_new_job_is_stored_under_the_declared_names() -> None:
    job = NewJob(
        b"p",
        headers={"h": "v"},
        backoff=Backoff(BackoffKind.LINEAR, 5, 10, 1.5, 0.25),
        idempotency_key="k",
    )
    stored = schema.spec(job)
    assert set(stored) <= set(schema.JOB_FIELDS)
    assert "content_type" not in stored and "trace.traceparent" not in stored  # empty
    assert stored["backoff.kind"] == "3" and stored["backoff.jitter"] == "0.25"
    assert stored["headers"] == '{"h":"v"}'


def test_records_are_read_back_from_their_members() -> None:
    raw = {
        b"id": b"q:7",
        b"state": b"active",
        b"payload": b"p",
        b"attempt": b"3",
        b"releases": b"1",
        **{k.encode(): str(v).encode() for k, v in schema.spec(NewJob(b"p")).items()},
        **{
            f"progress.{k}".encode(): v.encode()
            for k, v in schema.members(Progress(40.5, "m", "")).items()
        },
        **{
            f"error.{k}".encode(): v.encode()
            for k, v in schema.members(JobError("T", "x", True)).items()
        },
    }
    job = schema.job("q", raw)
    assert (job.seq, job.attempt, job.counted_attempts) == (7, 3, 2)
    assert job.progress == Progress(40.5, "m", "")
    assert job.error == JobError("T", "x", True)
    assert job.backoff == Backoff()


def test_the_domain_sends_exactly_the_reasons_the_proto_declares() -> None:
    from jobwire.v1 import error_reason_pb2
    from jobwire_broker.domain.errors import Reason

    declared = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    sent = {v for k, v in vars(Reason).items() if k.isupper()}
    assert sent == declared
