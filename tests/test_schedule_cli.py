"""The schedule commands as an operator runs them (`jobwire schedules [apply FILE]`,
`jobwire schedule show|pause|resume|delete NAME`), and the schedules file: parsed
strictly, applied by `jobwire serve --schedules FILE` before the broker serves,
declarative and idempotent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jobwire import Admin, CatchUpPolicy, OverlapPolicy
from jobwire._schedule_file import ScheduleFileError, schedules_from_toml
from jobwire_broker.server import BrokerApp
from support import ROOT, RedisServer, broker_settings, running_broker
from test_cli import assert_clean_error, jobwire, jobwire_all, target
from test_cli_admin import rows

SCHEDULES = """
[schedules.hourly-sync]
queue = "sync"
cron = "0 * * * *"
time_zone = "Europe/Berlin"
overlap = "skip"
catch_up = "all"
catch_up_limit = 10
job = { payload = { full = false }, max_attempts = 3, headers = { team = "ops" } }

[schedules.heartbeat]
queue = "ops"
interval = "5m"
start_within = "1m"
catch_up = "skip"
job = { concurrency_key = "ops", concurrency_limit = 2 }
"""


def test_the_file_is_parsed_strictly() -> None:
    hourly, beat = schedules_from_toml(SCHEDULES, "s.toml")
    assert (hourly.name, hourly.queue, hourly.cron, hourly.time_zone) == (
        "hourly-sync",
        "sync",
        "0 * * * *",
        "Europe/Berlin",
    )
    assert hourly.overlap == OverlapPolicy.SKIP.value and hourly.catch_up_limit == 10
    assert hourly.job.payload == b'{"full":false}' and hourly.job.max_attempts == 3
    assert beat.interval.seconds == 300 and beat.start_within.seconds == 60
    assert beat.catch_up == CatchUpPolicy.SKIP.value
    assert (beat.job.concurrency_key, beat.job.concurrency_limit) == ("ops", 2)
    for text, where in (
        ("[schedules.a]\nqueue = 1", "schedules.a.queue: must be a string"),
        ("[schedules.a]\nwhen = 'x'", "schedules.a.when: unknown key"),
        ("[schedules.a]\noverlap = 'never'", "schedules.a.overlap: must be one of allow, skip"),
        ("[schedules.a]\ninterval = 'soon'", "schedules.a.interval: not a duration"),
        ("[schedules.a]\njob = { colour = 1 }", "schedules.a.job: unknown key 'colour'"),
        ("[schedules.a]\njob = { concurrency_key = 1 }", "schedules.a.job: must be a string"),
        ("[other]\n", "unknown top-level key 'other'"),
        ("[schedules.a", "not valid TOML"),
    ):
        with pytest.raises(ScheduleFileError, match=where):
            schedules_from_toml(text, "s.toml")


async def test_schedules_apply_list_show_pause_resume_delete(
    broker: BrokerApp, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(SCHEDULES)
    t = ("--target", target(broker))
    first = await jobwire(*t, "schedules", "apply", str(path))
    assert (first.code, first.err) == (0, ""), first
    assert first.out.splitlines() == ["hourly-sync: created", "heartbeat: created"]
    again = await jobwire(*t, "--json", "schedules", "apply", str(path))
    assert [(r["schedule"], r["status"]) for r in json.loads(again.out)] == [
        ("hourly-sync", "unchanged"),
        ("heartbeat", "unchanged"),
    ]
    path.write_text(SCHEDULES.replace('interval = "5m"', 'interval = "10m"'))
    changed = await jobwire(*t, "schedules", "apply", str(path))
    assert changed.out.splitlines() == ["hourly-sync: unchanged", "heartbeat: updated"]

    listed, as_json, only_ops = await jobwire_all(
        list(t), [["schedules"], ["schedules", "--json"], ["schedules", "--queue", "ops"]]
    )
    table = rows(listed.out)
    assert table[0] == ["SCHEDULE", "QUEUE", "WHEN", "STATE", "NEXT RUN", "LAST TICK", "LAST JOB"]
    assert [r[:4] for r in table[1:]] == [
        ["heartbeat", "ops", "every 10m", "active"],
        ["hourly-sync", "sync", "0 * * * * (Europe/Berlin)", "active"],
    ]
    data = json.loads(as_json.out)
    assert [d["name"] for d in data] == ["heartbeat", "hourly-sync"]
    assert len(data[1]["next_run_times"]) == 5 and data[1]["overlap"] == "SKIP"
    assert [r[0] for r in rows(only_ops.out)[1:]] == ["heartbeat"]

    show = await jobwire(*t, "schedule", "show", "hourly-sync")
    assert show.code == 0 and "overlap     skip" in show.out and "next runs" in show.out
    paused = await jobwire(*t, "schedule", "pause", "heartbeat")
    assert paused.out == "paused heartbeat\n"
    async with Admin(target(broker)) as admin:
        assert (await admin.schedules.get("heartbeat")).paused
    resumed = await jobwire(*t, "schedule", "resume", "heartbeat")
    assert resumed.out.startswith("resumed heartbeat, next run 20")
    deleted = await jobwire(*t, "schedule", "delete", "heartbeat")
    assert deleted.out == "deleted heartbeat\n"

    bad = tmp_path / "bad.toml"
    bad.write_text('[schedules.x]\nqueue = "q"\ncron = "61 * * * *"')
    unknown, broken, missing = await jobwire_all(
        list(t),
        [["schedule", "show", "heartbeat"], ["schedules", "apply", str(bad)], ["schedule"]],
    )
    assert "heartbeat" in assert_clean_error(unknown, 3)
    assert "schedule.cron" in assert_clean_error(broken, 2)
    assert_clean_error(missing, 2)


async def test_serve_applies_the_schedules_file(
    redis_server: RedisServer, prefix: str, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(SCHEDULES)
    settings = broker_settings(redis_server.url, prefix, schedules_file=path)
    for _ in range(2):  # twice: the second start changes nothing
        async with running_broker(settings) as app, Admin(f"127.0.0.1:{app.port}") as admin:
            found = await admin.schedules.list()
            assert [(s.name, s.queue) for s in found] == [
                ("heartbeat", "ops"),
                ("hourly-sync", "sync"),
            ]
            first_runs = found[0].next_run_times
    assert first_runs


def test_serve_refuses_a_bad_schedules_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[schedules.x]\nqueue = "q"\ninterval = "1s"\ncron = "* * * * *"')
    done = subprocess.run(
        [
            *(sys.executable, "-m", "jobwire_broker", "serve"),
            *("--redis-url", "redis://127.0.0.1:1", "--schedules", str(bad)),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "schedules.x: schedule.cron: exactly one of cron and interval" in done.stderr
