"""The `jobwire` admin commands as an operator runs them (queues, queue, jobs, dead,
workers): separate processes against a real broker, checking tables, --json, exit codes,
confirmations on a terminal and what reached the broker."""

import asyncio
import json
import os
import pty
import re
import sys
import threading
from pathlib import Path

from helpers import enqueue, get, lease, ms
from jobwire import Admin, JobState
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from test_cli import ENV, Run, assert_clean_error, jobwire, jobwire_all, target
from test_sdk_admin import make_dead


async def counts(broker: BrokerApp, queue: str) -> tuple[int, int, int, int, int, int]:
    async with Admin(target(broker)) as admin:
        c = (await admin.get_queue(queue)).counts
    return (c.scheduled, c.ready, c.active, c.completed, c.dead, c.cancelled)


async def jobwire_tty(*args: str, answer: bytes = b"", timeout_s: float = 30) -> Run:
    """Runs `python -m jobwire ARGS` on a pseudo-terminal (stdin, stdout and stderr), as
    at a shell prompt, typing `answer`; returns what the terminal showed as `out`."""
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "jobwire", *args, stdin=slave, stdout=slave, stderr=slave, env=ENV
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the terminal's other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if answer:
        os.write(master, answer)
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.to_thread(reader.join, 5)
        os.close(master)
    assert proc.returncode is not None
    return Run(proc.returncode, b"".join(chunks).decode(errors="replace"), "")


def rows(text: str) -> list[list[str]]:
    """A table's lines split on runs of two or more spaces."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


# -- queues ---------------------------------------------------------------------------


async def test_queues_lists_counts_as_a_table_and_as_json(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ("--target", target(broker))
    empty = await jobwire(*t, "queues")
    assert (empty.code, empty.out, empty.err) == (0, "no queues\n", "")

    for _ in range(2):
        await enqueue(stub, "mail")
    await enqueue(stub, "mail", delay=ms(600_000))
    await make_dead(stub, "sms", 3)
    async with Admin(target(broker)) as admin:
        await admin.pause_queue("sms")

    table, as_json = await jobwire_all(list(t), [["queues"], ["queues", "--json"]])
    assert (table.code, table.err) == (0, "")
    lines = rows(table.out)
    assert lines[0][:7] == ["QUEUE", "STATE", "SCHEDULED", "READY", "ACTIVE", "COMPLETED", "DEAD"]
    mail = next(r for r in lines if r[0] == "mail")
    sms = next(r for r in lines if r[0] == "sms")
    assert mail[1:8] == ["running", "1", "2", "0", "0", "0", "0"]
    assert sms[1:8] == ["paused", "0", "0", "0", "0", "3", "0"]

    assert as_json.code == 0
    data = {q["name"]: q for q in json.loads(as_json.out)}
    assert data["mail"]["counts"] == {
        "scheduled": 1,
        "ready": 2,
        "active": 0,
        "completed": 0,
        "dead": 0,
        "cancelled": 0,
        "expired": 0,
    }
    assert data["sms"]["paused"] is True
    assert data["sms"]["effective_settings"]["max_attempts"] == 3


QUEUE_FILE = """
[queues.emails]
max_attempts = 5
lease_duration = "45s"

[queues.reports]
priority = 3
keep_completed = 50
"""


async def test_queues_apply_a_settings_file_idempotently(broker: BrokerApp, tmp_path: Path) -> None:
    path = tmp_path / "queues.toml"
    path.write_text(QUEUE_FILE)
    t = ("--target", target(broker))

    first = await jobwire(*t, "queues", "apply", str(path))
    assert (first.code, first.err) == (0, ""), first
    assert first.out.splitlines() == ["emails: created", "reports: created"]
    again = await jobwire(*t, "--json", "queues", "apply", str(path))
    assert again.code == 0, again
    data = json.loads(again.out)
    assert [(r["queue"], r["status"]) for r in data] == [
        ("emails", "unchanged"),
        ("reports", "unchanged"),
    ]
    assert data[0]["settings"]["max_attempts"] == 5
    assert data[0]["settings"]["lease_duration"] == 45.0

    async with Admin(target(broker)) as admin:
        emails = await admin.get_queue("emails")
        assert (emails.settings.max_attempts, emails.settings.lease_duration) == (5, 45.0)
        await admin.update_queue("emails", None, ["max_attempts"])
    changed = await jobwire(*t, "queues", "apply", str(path))
    assert changed.out.splitlines() == ["emails: updated", "reports: unchanged"]

    bad = tmp_path / "bad.toml"
    bad.write_text("[queues.x]\nmax_attempts = [")
    missing, broken = await jobwire_all(
        list(t), [["queues", "apply", str(tmp_path / "none.toml")], ["queues", "apply", str(bad)]]
    )
    assert "none.toml" in assert_clean_error(missing, 2)
    assert "bad.toml" in assert_clean_error(broken, 2)


# -- queue ----------------------------------------------------------------------------


async def test_queue_show_pause_and_resume(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    t = ["--target", target(broker)]
    await enqueue(stub, "ops")
    await stub.Lease(pb.LeaseRequest(queue="ops", max_jobs=1, worker_id="w-1"))
    await enqueue(stub, "ops")

    show, show_json = await jobwire_all(
        t, [["queue", "show", "ops"], ["queue", "show", "ops", "--json"]]
    )
    assert (show.code, show.err) == (0, ""), show
    assert show.out.startswith("queue       ops\n")
    assert "ready 1  active 1" in show.out
    assert "workers     w-1" in show.out
    assert "max_attempts" in show.out and "default" in show.out
    data = json.loads(show_json.out)
    assert data["name"] == "ops" and data["counts"]["active"] == 1
    assert len(data["last_hour"]) == 60 and data["workers"] == ["w-1"]

    paused = await jobwire(*t, "queue", "pause", "ops")
    assert (paused.code, paused.out) == (0, "paused ops\n")
    again = await jobwire(*t, "--json", "queue", "pause", "ops")  # a no-op
    assert json.loads(again.out) == {"queue": "ops", "paused": True}
    assert await lease(stub, "ops") == []
    shown = await jobwire(*t, "queue", "show", "ops")
    assert shown.out.startswith("queue       ops  (paused)")

    resumed, resumed_json = await jobwire_all(
        t, [["queue", "resume", "ops"], ["queue", "resume", "ops", "--json"]]
    )
    assert resumed.out == "resumed ops\n"
    assert json.loads(resumed_json.out) == {"queue": "ops", "paused": False}
    assert len(await lease(stub, "ops")) == 1


async def test_queue_drain_asks_on_a_terminal(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ("--target", target(broker))
    for _ in range(3):
        await enqueue(stub, "drain")
    await enqueue(stub, "drain", delay=ms(600_000))

    no = await jobwire_tty(*t, "queue", "drain", "drain", answer=b"n\n")
    assert no.code == 1, no
    assert "Delete the 4 ready or scheduled jobs of drain? [y/N]" in no.out
    assert "jobwire: aborted" in no.out
    assert await counts(broker, "drain") == (1, 3, 0, 0, 0, 0)

    yes = await jobwire_tty(*t, "queue", "drain", "drain", answer=b"y\n")
    assert yes.code == 0, yes
    assert "drained drain: deleted 4 jobs" in yes.out
    assert await counts(broker, "drain") == (0, 0, 0, 0, 0, 0)

    # Not on a terminal (a script), or with --yes: no question.
    await enqueue(stub, "drain")
    piped = await jobwire(*t, "queue", "drain", "drain")
    assert (piped.code, piped.out) == (0, "drained drain: deleted 1 job\n")
    await enqueue(stub, "drain")
    forced = await jobwire_tty(*t, "--json", "queue", "drain", "drain", "--yes")
    assert forced.code == 0 and "[y/N]" not in forced.out
    assert json.loads(forced.out.strip()) == {"queue": "drain", "deleted": 1}


async def test_queue_delete_refuses_a_busy_queue_unless_forced(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ["--target", target(broker)]
    await enqueue(stub, "doomed")
    await enqueue(stub, "doomed")
    await lease(stub, "doomed")

    busy = await jobwire(*t, "queue", "delete", "doomed")
    assert assert_clean_error(busy, 1)  # QUEUE_BUSY: a job is active
    asked = await jobwire_tty(*t, "queue", "delete", "doomed", "--force", answer=b"\n")
    assert asked.code == 1 and "Delete queue doomed and its 2 jobs? [y/N]" in asked.out
    forced = await jobwire(*t, "--json", "queue", "delete", "doomed", "--force")
    assert forced.code == 0, forced
    assert json.loads(forced.out) == {"queue": "doomed", "deleted": 2}
    gone = await jobwire(*t, "queue", "show", "doomed")
    assert assert_clean_error(gone, 3)


async def test_queue_settings_show_and_set(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    t = ["--target", target(broker)]
    changed = await jobwire(
        *t,
        "queue",
        "settings",
        "tuned",
        "--set",
        "max_attempts=5",
        "lease_duration=30s",
        "backoff=exponential:500ms:1m:3",
        "--set",
        "dead_max_age=7d",
    )
    assert (changed.code, changed.err) == (0, ""), changed
    table = {r[0]: r[1:] for r in rows(changed.out)}
    assert table["SETTING"] == ["VALUE", "SOURCE"]
    assert table["max_attempts"] == ["5", "set"]
    assert table["lease_duration"] == ["30s", "set"]
    assert table["backoff"] == ["exponential 500ms x3 up to 1m", "set"]
    assert table["dead_max_age"] == ["7d", "set"]
    assert table["keep_completed"] == ["10000", "default"]
    assert table["execution_timeout"] == ["none", "default"]

    # A job enqueued now gets the queue's defaults.
    job = await get(stub, await enqueue(stub, "tuned"))
    assert job.spec.max_attempts == 5 and job.spec.lease_duration.seconds == 30

    reset, shown = await jobwire_all(
        t,
        [
            ["queue", "settings", "tuned", "--set", "max_attempts=default", "--json"],
            ["queue", "settings", "tuned"],
        ],
    )
    data = json.loads(reset.out)
    assert data["queue"] == "tuned"
    assert data["settings"]["max_attempts"] is None
    assert data["effective_settings"]["max_attempts"] == 3
    assert data["settings"]["backoff"] == {
        "kind": "EXPONENTIAL",
        "initial": 0.5,
        "max": 60.0,
        "multiplier": 3.0,
        "jitter": 0.0,
    }
    assert shown.code == 0 and "lease_duration" in shown.out


SETTINGS_BAD = [
    (["--set", "nope=1"], "unknown setting 'nope'"),
    (["--set", "max_attempts"], "--set wants KEY=VALUE"),
    (["--set", "max_attempts=many"], "--set max_attempts: not a whole number"),
    (["--set", "lease_duration=soon"], "--set lease_duration: not a duration"),
    (["--set", "backoff=sideways:1s"], "--set backoff: not a backoff"),
    (["--set", "max_attempts=0"], "settings.max_attempts: "),  # the broker's check
    (["--set", "lease_duration=0s"], "settings.lease_duration: "),
]


async def test_queue_settings_bad_values_exit_2_and_change_nothing(broker: BrokerApp) -> None:
    async with Admin(target(broker)) as admin:
        await admin.update_queue("strict", None)
        before = await admin.get_queue("strict")
        runs = await jobwire_all(
            ["--target", target(broker), "queue", "settings", "strict"],
            [a for a, _ in SETTINGS_BAD],
        )
        for (args, message), run in zip(SETTINGS_BAD, runs, strict=True):
            assert message in assert_clean_error(run, 2), args
        assert (await admin.get_queue("strict")).settings == before.settings


async def test_queue_watch_prints_events_as_they_happen(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    async with Admin(target(broker)) as admin:
        await admin.update_queue("live", None)
    job_id = await enqueue(stub, "live")
    for flags in ([], ["--json"]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jobwire",
            "--target",
            target(broker),
            *flags,
            "queue",
            "watch",
            "live",
            "--after",
            "0",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        finally:
            proc.kill()
            await proc.wait()
        if flags:
            event = json.loads(line)
            assert (event["kind"], event["job_id"], event["state"]) == (
                "ENQUEUED",
                job_id,
                "READY",
            )
            assert event["id"] and event["gap"] is False
        else:
            assert f"  enqueued  {job_id}  ready attempt 0" in line


# -- jobs -----------------------------------------------------------------------------


async def test_jobs_list_dead_with_limit_order_and_filter(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ["--target", target(broker), "jobs", "list", "dlq", "--state", "dead"]
    ids = await make_dead(stub, "dlq", 5)
    other = await make_dead(stub, "dlq", 2, error_type="KeyError", message="no {i}")
    async with Admin(target(broker)) as admin:  # the broker's order (ties in a ms: by id)
        order = [j.id async for j in admin.iter_jobs("dlq", JobState.DEAD)]
    assert set(order) == set(ids + other)

    table, limited, newest, filtered, as_json = await jobwire_all(
        t,
        [
            [],
            ["--limit", "2"],
            ["--newest", "--limit", "1"],
            ["--error-type", "KeyError"],
            ["--json"],
        ],
    )
    assert (table.code, table.err) == (0, "")
    lines = rows(table.out)
    assert lines[0] == ["JOB", "STATE", "ATTEMPT", "FINISHED", "ERROR"]
    assert [r[0] for r in lines[1:]] == order
    assert lines[1][1:3] == ["dead", "1"]
    assert lines[1][4].startswith("TimeoutError: call to 10.0.0.")
    assert [r[0] for r in rows(limited.out)[1:]] == order[:2]
    assert [r[0] for r in rows(newest.out)[1:]] == order[-1:]
    assert sorted(r[0] for r in rows(filtered.out)[1:]) == sorted(other)
    data = json.loads(as_json.out)
    assert [j["id"] for j in data] == order
    assert data[0]["state"] == "DEAD" and data[0]["last_error"]["type"] == "TimeoutError"

    nothing = await jobwire("--target", target(broker), "jobs", "list", "dlq", "--state", "ready")
    assert (nothing.code, nothing.out) == (0, "no ready jobs\n")


async def test_jobs_retry_by_ids_and_by_state(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ["--target", target(broker), "jobs", "retry", "fix"]
    ids = await make_dead(stub, "fix", 4)
    await make_dead(stub, "fix", 2, error_type="KeyError", message="no {i}")

    by_ids = await jobwire(*t, ids[0], ids[1].split(":")[1])  # a bare number works too
    assert (by_ids.code, by_ids.out) == (0, "retried 2 jobs\n"), by_ids
    assert (await get(stub, ids[1])).state == job_pb2.JOB_STATE_READY
    by_type = await jobwire(*t, "--state", "dead", "--error-type", "KeyError", "--json")
    assert json.loads(by_type.out) == {"queue": "fix", "retried": 2}
    rest = await jobwire(*t, "--state", "dead")
    assert rest.out == "retried 2 jobs\n"
    assert await counts(broker, "fix") == (0, 6, 0, 0, 0, 0)

    wrong = await jobwire(*t, ids[0])  # ready now, not dead
    assert ids[0] in assert_clean_error(wrong, 1)
    missing = await jobwire(*t, "fix:999")
    assert assert_clean_error(missing, 3)


async def test_jobs_delete_asks_on_a_terminal_and_promote(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ("--target", target(broker))
    ids = await make_dead(stub, "tidy", 3)
    later = [await enqueue(stub, "tidy", delay=ms(600_000)) for _ in range(3)]

    no = await jobwire_tty(*t, "jobs", "delete", "tidy", ids[0], answer=b"no\n")
    assert no.code == 1 and "Delete 1 job of tidy? [y/N]" in no.out
    yes = await jobwire_tty(*t, "jobs", "delete", "tidy", "--state", "dead", answer=b"y\n")
    assert yes.code == 0, yes
    assert "Delete every dead job of tidy? [y/N]" in yes.out and "deleted 3 jobs" in yes.out

    promoted = await jobwire(*t, "jobs", "promote", "tidy", later[0])
    every = await jobwire(*t, "--json", "jobs", "promote", "tidy")  # the other two
    assert promoted.out == "promoted 1 job\n"
    assert json.loads(every.out) == {"queue": "tidy", "promoted": 2}
    piped = await jobwire(*t, "--json", "jobs", "delete", "tidy", *later)
    assert json.loads(piped.out) == {"queue": "tidy", "deleted": 3}
    assert await counts(broker, "tidy") == (0, 0, 0, 0, 0, 0)


# -- dead letters ---------------------------------------------------------------------


async def test_dead_groups_table_and_json(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    t = ["--target", target(broker), "dead", "groups", "dlq"]
    await make_dead(stub, "dlq", 6)
    await make_dead(stub, "dlq", 2, error_type="KeyError", message="no key 'k{i}'")

    table, as_json = await jobwire_all(t, [[], ["--json"]])
    assert (table.code, table.err) == (0, "")
    lines = rows(table.out)
    assert lines[0] == ["GROUP", "COUNT", "LAST SEEN", "ERROR"]
    by_error = {r[3]: r for r in lines[1:]}
    assert by_error["TimeoutError: call to <ip> timed out after <n> ms"][1] == "6"
    assert by_error["KeyError: no key <str>"][1] == "2"
    data = json.loads(as_json.out)
    assert {g["count"] for g in data} == {6, 2}
    assert all(len(g["fingerprint"]) == 16 and g["sample_job_id"] for g in data)

    empty = await jobwire("--target", target(broker), "dead", "groups", "clean")
    assert assert_clean_error(empty, 3)  # no such queue
    await enqueue(stub, "clean")
    empty = await jobwire("--target", target(broker), "dead", "groups", "clean")
    assert (empty.code, empty.out) == (0, "no dead jobs in clean\n")


async def fingerprint_of(broker: BrokerApp, queue: str, error_type: str) -> str:
    async with Admin(target(broker)) as admin:
        groups = [g async for g in admin.iter_dead_letter_groups(queue)]
    return next(g.fingerprint for g in groups if g.error_type == error_type)


async def test_dead_redrive_dry_run_plain_json_and_limit(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ["--target", target(broker), "dead", "redrive", "dlq"]
    await make_dead(stub, "dlq", 20)
    await make_dead(stub, "dlq", 3, error_type="KeyError", message="no {i}")
    group = await fingerprint_of(broker, "dlq", "TimeoutError")

    dry, dry_json = await jobwire_all(t, [[group, "--dry-run"], [group, "--dry-run", "--json"]])
    assert (dry.code, dry.out) == (0, "would redrive 20 dead jobs of dlq\n"), dry
    assert json.loads(dry_json.out.splitlines()[-1]) == {
        "matched": 20,
        "redriven": 0,
        "done": True,
    }
    assert await counts(broker, "dlq") == (0, 0, 0, 0, 23, 0)

    plain = await jobwire(*t, group, "--limit", "5", "--rate", "0")
    assert plain.code == 0, plain
    lines = plain.out.splitlines()
    assert lines[-1] == "redrove 5 of 5 dead jobs of dlq"
    assert all(line.startswith("redriven ") for line in lines[:-1])
    assert "redriven 5/5" in lines

    as_json = await jobwire(*t, "--json", "--rate", "50", "--error-type", "KeyError")
    messages = [json.loads(line) for line in as_json.out.splitlines()]
    assert messages[0]["matched"] == 3
    assert messages[-1] == {"matched": 3, "redriven": 3, "done": True}
    assert await counts(broker, "dlq") == (0, 8, 0, 0, 15, 0)


async def test_dead_redrive_draws_a_progress_bar_on_a_terminal(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    await make_dead(stub, "bar", 30)
    run = await jobwire_tty("--target", target(broker), "dead", "redrive", "bar", "--rate", "60")
    assert run.code == 0, run
    assert "\r[" in run.out and "] 30/30" in run.out and "jobs/s" in run.out
    assert run.out.rstrip().endswith("redrove 30 of 30 dead jobs of bar")


async def test_dead_purge_by_group_age_or_all(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    t = ["--target", target(broker), "dead", "purge", "dlq"]
    await make_dead(stub, "dlq", 4)
    await make_dead(stub, "dlq", 2, error_type="KeyError", message="no {i}")
    group = await fingerprint_of(broker, "dlq", "KeyError")

    dry, old, old_json = await jobwire_all(
        t, [[group, "--dry-run"], ["--older-than", "7d"], ["--older-than", "1h", "--json"]]
    )
    assert (dry.code, dry.out) == (0, "would purge 2 dead jobs of dlq\n"), dry
    assert old.out == "purged 0 dead jobs of dlq\n"
    assert json.loads(old_json.out) == {"queue": "dlq", "purged": 0, "dry_run": False}

    asked = await jobwire_tty(*t, group, answer=b"n\n")
    assert asked.code == 1 and "Delete 2 dead jobs of dlq? [y/N]" in asked.out
    assert await counts(broker, "dlq") == (0, 0, 0, 0, 6, 0)
    one = await jobwire_tty(*t, group, answer=b"y\n")
    assert one.code == 0 and "purged 2 dead jobs of dlq" in one.out
    rest = await jobwire(*t, "--all")
    assert rest.out == "purged 4 dead jobs of dlq\n"
    assert await counts(broker, "dlq") == (0, 0, 0, 0, 0, 0)


# -- workers --------------------------------------------------------------------------


async def test_workers_table_and_json(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    t = ["--target", target(broker)]
    none = await jobwire(*t, "workers")
    assert (none.code, none.out) == (0, "no workers\n")
    await enqueue(stub, "busy")
    await stub.Lease(pb.LeaseRequest(queue="busy", max_jobs=1, worker_id="w-busy"))
    await enqueue(stub, "calm", delay=ms(600_000))
    await stub.Lease(pb.LeaseRequest(queue="calm", max_jobs=1, worker_id="w-calm"))

    table, only, as_json, everyone = await jobwire_all(
        t,
        [["workers"], ["workers", "--queue", "busy"], ["workers", "--json"], ["workers", "--all"]],
    )
    assert (table.code, table.err) == (0, "")
    lines = rows(table.out)
    assert lines[0] == ["WORKER", "STATE", "IN FLIGHT", "LAST LEASE", "LAST HEARTBEAT", "QUEUES"]
    busy = next(r for r in lines if r[0] == "w-busy")
    assert busy[1:3] == ["active", "1"] and busy[-1] == "busy"
    assert next(r for r in lines if r[0] == "w-calm")[1] == "idle"
    assert [r[0] for r in rows(only.out)[1:]] == ["w-busy"]
    data = {w["id"]: w for w in json.loads(as_json.out)}
    assert data["w-busy"]["state"] == "ACTIVE" and data["w-busy"]["in_flight"] == 1
    assert data["w-busy"]["queues"] == ["busy"] and data["w-busy"]["last_lease_at"]
    assert everyone.code == 0 and "w-busy" in everyone.out


# -- errors ---------------------------------------------------------------------------


UNKNOWN_QUEUE = [
    ["queue", "show", "nope"],
    ["queue", "pause", "nope"],
    ["queue", "resume", "nope"],
    ["queue", "drain", "nope"],
    ["queue", "delete", "nope"],
    ["queue", "settings", "nope"],
    ["queue", "watch", "nope"],
    ["jobs", "list", "nope", "--state", "dead"],
    ["jobs", "retry", "nope", "--state", "dead"],
    ["jobs", "delete", "nope", "--state", "dead"],
    ["jobs", "promote", "nope"],
    ["dead", "groups", "nope"],
    ["dead", "redrive", "nope"],
    ["dead", "redrive", "nope", "--dry-run"],
    ["dead", "purge", "nope", "--all"],
    ["workers", "--queue", "nope"],
]


async def test_an_unknown_queue_exits_3_with_one_line(broker: BrokerApp) -> None:
    async with Admin(target(broker)) as admin:
        await admin.update_queue("known", None)
    runs = await jobwire_all(["--target", target(broker)], UNKNOWN_QUEUE)
    runs += await jobwire_all(["--target", target(broker), "--json"], UNKNOWN_QUEUE[:3])
    for args, run in zip(UNKNOWN_QUEUE + UNKNOWN_QUEUE[:3], runs, strict=True):
        line = assert_clean_error(run, 3)
        assert "nope" in line, (args, line)
        assert len(run.err.strip().splitlines()) == 1, args
    async with Admin(target(broker)) as admin:
        assert [q.name for q in await admin.list_queues()] == ["known"]  # nothing created


BAD_ARGUMENTS = [
    (["queue"], "the following arguments are required"),
    (["queue", "show"], "the following arguments are required: queue"),
    (["queue", "frobnicate", "q"], "invalid choice: 'frobnicate'"),
    (["queues", "apply"], "the following arguments are required: file"),
    (["jobs", "list", "q"], "the following arguments are required: --state"),
    (["jobs", "list", "q", "--state", "sleeping"], "not a job state: 'sleeping'"),
    (["jobs", "list", "q", "--state", "dead", "--limit", "many"], "invalid int value"),
    (["jobs", "retry", "q"], "give job ids or --state"),
    (["jobs", "retry", "q", "q:1", "--state", "dead"], "not both"),
    (["jobs", "delete", "q", "q:1", "--error-type", "E"], "go with --state"),
    (["dead", "redrive", "q", "--rate", "fast"], "invalid float value: 'fast'"),
    (["dead", "purge", "q"], "give a group, --older-than or --all"),
    (["dead", "purge", "q", "--all", "--older-than", "1d"], "--all takes neither"),
    (["dead", "purge", "q", "--older-than", "a week"], "not a duration: 'a week'"),
    (["dead", "groups"], "the following arguments are required: queue"),
    (["workers", "extra"], "unrecognized arguments: extra"),
    # The broker's own checks, one line naming the field.
    (["queue", "show", "bad queue!"], "queue: "),
    (["dead", "redrive", "q", "--rate", "-5"], "rate: "),
    (["jobs", "retry", "q", "not-an-id"], "job_ids"),
]


async def test_bad_arguments_exit_2_with_one_line(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    await enqueue(stub, "q")
    runs = await jobwire_all(["--target", target(broker)], [a for a, _ in BAD_ARGUMENTS])
    for (args, message), run in zip(BAD_ARGUMENTS, runs, strict=True):
        line = assert_clean_error(run, 2)
        assert message in line, (args, line)
        usage = run.err.rstrip("\n").split("\n")[:-1]
        assert all(u.startswith(("usage: jobwire", " ")) for u in usage), run.err
    assert await counts(broker, "q") == (0, 1, 0, 0, 0, 0)


async def test_an_unreachable_broker_exits_4() -> None:
    cases = [["queues"], ["queue", "show", "q"], ["dead", "redrive", "q"], ["workers"]]
    runs = await jobwire_all(["--target", "127.0.0.1:1", "--timeout", "3"], cases)
    for args, run in zip(cases, runs, strict=True):
        assert "unreachable" in assert_clean_error(run, 4), args


async def test_help_lists_the_admin_commands() -> None:
    top, queue, dead = await jobwire_all([], [["--help"], ["queue", "--help"], ["dead", "--help"]])
    for command in ("queues", "queue", "jobs", "dead", "workers"):
        assert command in top.out
    for command in ("show", "pause", "resume", "drain", "settings", "watch"):
        assert command in queue.out
    for command in ("groups", "redrive", "purge"):
        assert command in dead.out
