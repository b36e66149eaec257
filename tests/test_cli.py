"""The `jobwire` command as a user runs it: a separate process (`python -m jobwire`)
against a real broker, checking exit codes, stdout and what reached the broker."""

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import enqueue, get, lease
from jobwire import Job, Worker
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from support import eventually

WORKERS = Path(__file__).resolve().parent / "workers"
# `jobwire worker cli_app:...` imports the app from tests/workers.
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(WORKERS), os.environ.get("PYTHONPATH")])),
}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def target(broker: BrokerApp) -> str:
    return f"127.0.0.1:{broker.port}"


async def jobwire(*args: str, stdin: bytes | None = None, timeout_s: float = 30) -> Run:
    """Runs `python -m jobwire ARGS` to the end without blocking the in-process broker."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobwire",
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def jobwire_all(prefix: list[str], cases: list[list[str]]) -> list[Run]:
    """Runs one command per case side by side: each is a process start of its own."""
    return list(await asyncio.gather(*(jobwire(*prefix, *args) for args in cases)))


def assert_clean_error(run: Run, code: int) -> str:
    """The documented error shape: exit `code`, nothing on stdout, no traceback; returns
    the one-line message (argparse may put its usage block above it)."""
    assert run.code == code, run
    assert run.out == ""
    assert "Traceback" not in run.err
    lines = run.err.rstrip("\n").split("\n")
    assert lines[-1].startswith("jobwire"), run.err
    return lines[-1]


# -- enqueue --------------------------------------------------------------------------


PAYLOADS = [
    # (argument, payload the broker got, content type)
    ('{"to": "ada@example.com", "n": 1}', b'{"to":"ada@example.com","n":1}', "application/json"),
    ("[1, 2, 3]", b"[1,2,3]", "application/json"),
    ("hello world", b"hello world", "text/plain; charset=utf-8"),
    ("{not json", b"{not json", "text/plain; charset=utf-8"),
    ("42", b"42", "text/plain; charset=utf-8"),
]


async def test_enqueue_payload_argument(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    runs = await asyncio.gather(
        *(jobwire("--target", target(broker), "enqueue", "cli", text) for text, _, _ in PAYLOADS)
    )
    assert {r.out.strip() for r in runs} == {f"cli:{n}" for n in range(1, len(PAYLOADS) + 1)}
    for (text, payload, content_type), run in zip(PAYLOADS, runs, strict=True):
        assert (run.code, run.err) == (0, ""), text
        job = await get(stub, run.out.strip())
        assert (job.spec.payload, job.spec.content_type) == (payload, content_type), text
        assert job.state == job_pb2.JOB_STATE_READY


async def test_enqueue_from_a_file_and_from_stdin(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, tmp_path: Path
) -> None:
    data = b"\x00\xffraw bytes\nline two\n"
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    enq = ("--target", target(broker), "enqueue", "cli", "--file")
    from_file, typed, from_stdin = await asyncio.gather(
        jobwire(*enq, str(path)),
        jobwire(*enq, str(path), "--content-type", "application/octet-stream"),
        jobwire(*enq, "-", stdin=data),
    )
    for run in (from_file, typed, from_stdin):
        assert (run.code, run.err) == (0, ""), run

    jobs = [await get(stub, r.out.strip()) for r in (from_file, typed, from_stdin)]
    assert [j.spec.payload for j in jobs] == [data, data, data]
    assert [j.spec.content_type for j in jobs] == ["", "application/octet-stream", ""]


async def test_enqueue_options_and_json_output(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    run = await jobwire(
        "--target",
        target(broker),
        "--json",
        "enqueue",
        "cli",
        '{"x": 1}',
        "--header",
        "tenant=acme",
        "--header",
        "query=a=b",
        "--priority",
        "7",
        "--delay",
        "60",
        "--max-attempts",
        "4",
    )
    assert (run.code, run.err) == (0, ""), run
    reply = json.loads(run.out)
    assert reply == {"job_id": "cli:1", "duplicate": False, "state": "SCHEDULED"}

    job = await get(stub, reply["job_id"])
    assert dict(job.spec.headers) == {"tenant": "acme", "query": "a=b"}
    assert job.spec.priority == 7
    assert job.spec.max_attempts == 4
    assert job.state == job_pb2.JOB_STATE_SCHEDULED
    delay = job.run_time.ToMilliseconds() - job.create_time.ToMilliseconds()
    assert 59_000 <= delay <= 61_000


async def test_enqueue_with_an_idempotency_key_reports_the_duplicate(broker: BrokerApp) -> None:
    args = ("--target", target(broker))
    key = ("--idempotency-key", "order-17")
    first = await jobwire(*args, "enqueue", "cli", "hello", *key)
    second, as_json = await asyncio.gather(
        jobwire(*args, "enqueue", "cli", "hello again", *key),
        jobwire(*args, "--json", "enqueue", "cli", "hello", *key),
    )
    assert first.code == second.code == as_json.code == 0
    assert first.out.strip() == "cli:1"
    assert second.out.strip() == "cli:1 (duplicate)"
    assert json.loads(as_json.out) == {"job_id": "cli:1", "duplicate": True, "state": "READY"}


# -- get and cancel -------------------------------------------------------------------


async def test_get_shows_state_attempt_result_and_error(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    done = await enqueue(stub, "cli", b'{"n": 1}', content_type="application/json")
    dead = await enqueue(stub, "cli", b"{}")
    first, second = await lease(stub, "cli", n=2)
    await stub.Complete(
        pb.CompleteRequest(
            job_id=first.job.id,
            lease_token=first.lease_token,
            result=b'{"ok":true}',
            result_content_type="application/json",
        )
    )
    await stub.Fail(
        pb.FailRequest(
            job_id=second.job.id,
            lease_token=second.lease_token,
            error=job_pb2.JobError(type="Boom", message="it broke", non_retryable=True),
        )
    )

    text, as_json, failed, failed_json = await jobwire_all(
        ["--target", target(broker)],
        [["get", done], ["--json", "get", done], ["get", dead], ["--json", "get", dead]],
    )
    assert (text.code, text.err) == (0, "")
    assert text.out.splitlines() == [f"{done}  completed  attempt 1/3", 'result    {"ok":true}']

    assert as_json.code == 0
    data = json.loads(as_json.out)
    assert data["id"] == done
    assert data["state"] == "COMPLETED"
    assert data["attempt"] == 1
    assert json.loads(data["result"]) == {"ok": True}
    assert data["result_content_type"] == "application/json"
    assert data["payload"] == '{"n": 1}'
    assert data["last_error"] is None
    assert data["finished_at"] is not None

    assert failed.code == 0
    assert failed.out.splitlines() == [f"{dead}  dead  attempt 1/3", "error     Boom: it broke"]
    data = json.loads(failed_json.out)
    assert (data["state"], data["attempt"]) == ("DEAD", 1)
    assert data["last_error"] == {"type": "Boom", "message": "it broke", "non_retryable": True}


async def test_cancel_a_pending_job(broker: BrokerApp, stub: rpc.BrokerServiceStub) -> None:
    first = await enqueue(stub, "cli")
    second = await enqueue(stub, "cli")

    text, as_json = await jobwire_all(
        ["--target", target(broker)], [["cancel", first], ["--json", "cancel", second]]
    )
    assert (text.code, text.out, text.err) == (0, "cancelled\n", "")
    assert as_json.code == 0
    assert json.loads(as_json.out) == {"job_id": second, "state": "CANCELLED"}
    for job_id in (first, second):
        assert (await get(stub, job_id)).state == job_pb2.JOB_STATE_CANCELLED

    # Watching a job that ended without completing says so in the exit code.
    watched = await jobwire("--target", target(broker), "watch", first)
    assert watched.code == 1
    assert "cancelled" in watched.out


# -- watch ----------------------------------------------------------------------------


async def stepping(job: Job) -> dict[str, Any]:
    # Steps well apart (the worker sends progress at most every 0.1 s, only the latest),
    # so each one is sent even on a busy machine.
    for percent in (25, 50, 75):
        await asyncio.sleep(0.3)
        job.progress(percent, f"step {percent}")
    await asyncio.sleep(0.3)
    return {"steps": 3}


async def watch_while_a_worker_runs(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, *flags: str
) -> tuple[int, list[str]]:
    """Starts `jobwire watch` on a ready job, then a worker that completes it; returns
    the exit code and stdout lines."""
    job_id = await enqueue(stub, "cli", b"{}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobwire",
        "--target",
        target(broker),
        *flags,
        "watch",
        job_id,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    worker = Worker(target(broker), lease_wait=0.5)
    worker.register("cli", stepping)
    running: asyncio.Task[None] | None = None
    try:
        assert proc.stdout is not None
        # The snapshot is out, so the watch is subscribed before any work starts.
        first = await asyncio.wait_for(proc.stdout.readline(), 15)
        running = asyncio.create_task(worker.run(install_signal_handlers=False))
        rest, err = await asyncio.wait_for(proc.communicate(), 20)
        assert "Traceback" not in err.decode()
    finally:
        worker.stop()
        if running is not None:
            await running
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, (first + rest).decode().splitlines()


async def test_watch_draws_progress_until_the_job_completes(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    code, lines = await watch_while_a_worker_runs(broker, stub)
    assert code == 0
    lines = [line for line in lines if line]
    assert "ready" in lines[0]
    steps = [line for line in lines if "step" in line]
    assert steps, lines
    percents = [float(line.split("%")[0].split("]")[1]) for line in steps]
    assert percents == sorted(percents)
    assert "step 75" in steps[-1]
    assert "completed" in lines[-1]
    assert "100.0%" not in lines[-1]  # the bar shows the last reported progress, 75%
    assert lines[-1].startswith("[" + "#" * 22)


async def test_watch_json_prints_one_event_per_line_in_order(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    code, lines = await watch_while_a_worker_runs(broker, stub, "--json")
    assert code == 0
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert set(events[0]) == {"event_id", "kind", "state", "progress"}
    assert (events[0]["kind"], events[0]["state"]) == ("snapshot", "READY")
    assert (events[-1]["kind"], events[-1]["state"]) == ("state", "COMPLETED")

    states = [e["state"] for e in events if e["kind"] == "state"]
    assert states == ["ACTIVE", "COMPLETED"]
    progress = [e["progress"]["percent"] for e in events if e["kind"] == "progress"]
    assert progress == [25.0, 50.0, 75.0]
    assert events[-1]["progress"]["message"] == "step 75"

    ids = [e["event_id"] for e in events[1:]]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))


# -- worker ---------------------------------------------------------------------------


async def run_cli_worker(
    broker: BrokerApp, stub: rpc.BrokerServiceStub, args: list[str], wanted: list[str]
) -> str:
    """Runs `jobwire worker ARGS` until every job in `wanted` completed, then SIGTERMs
    it; checks it exits 0 and returns its stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobwire",
        "--target",
        target(broker),
        "worker",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:

        async def all_done() -> bool:
            if proc.returncode is not None:
                return True  # fail below, with its output
            states = [(await get(stub, job_id)).state for job_id in wanted]
            return all(s == job_pb2.JOB_STATE_COMPLETED for s in states)

        await eventually(all_done, timeout_s=20)
        assert proc.returncode is None, "the worker exited early"
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    return stderr


async def results(stub: rpc.BrokerServiceStub, job_ids: list[str]) -> list[Any]:
    return [json.loads((await get(stub, job_id)).result) for job_id in job_ids]


async def test_worker_instance_with_queue_and_concurrency(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    a_jobs = [await enqueue(stub, "cli-a", b'{"sleep": 0.3}') for _ in range(6)]
    b_job = await enqueue(stub, "cli-b", b"{}")

    await run_cli_worker(
        broker, stub, ["cli_app:worker", "--queue", "cli-a", "--concurrency", "3"], a_jobs
    )

    done = await results(stub, a_jobs)
    assert {r["queue"] for r in done} == {"cli-a"}
    # At most 3 at once, and 3 were reached (all 6 were ready when it started).
    assert max(r["running"] for r in done) == 3
    # --queue cli-a left the other queue alone.
    job = await get(stub, b_job)
    assert (job.state, job.attempt) == (job_pb2.JOB_STATE_READY, 0)


async def test_worker_from_a_dict_of_handlers(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    jobs = [await enqueue(stub, q, b'{"sleep": 0.1}') for q in ("cli-a", "cli-b") * 3]

    await run_cli_worker(broker, stub, ["cli_app:handlers", "--concurrency", "1"], jobs)

    done = await results(stub, jobs)
    assert [r["queue"] for r in done] == ["cli-a", "cli-b"] * 3
    assert {r["running"] for r in done} == {1}  # one job at a time per queue


async def test_worker_with_a_bad_app_or_queue(broker: BrokerApp) -> None:
    no_module, not_a_worker, no_handler = await jobwire_all(
        ["--target", target(broker), "worker"],
        [["no_such_module_xyz:worker"], ["json:dumps"], ["cli_app:handlers", "--queue", "zz"]],
    )
    assert "no_such_module_xyz" in assert_clean_error(no_module, 2)
    assert "neither a Worker nor a mapping" in assert_clean_error(not_a_worker, 2)
    assert "no handler for queue(s): zz" in assert_clean_error(no_handler, 2)


# -- errors ---------------------------------------------------------------------------


BAD_ARGUMENTS = [
    (["enqueue"], "the following arguments are required: queue"),
    (["enqueue", "cli", "x", "--header", "no-equals-sign"], "--header wants KEY=VALUE"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["get"], "the following arguments are required: job_id"),
    (["enqueue", "cli", "x", "--priority", "high"], "invalid int value: 'high'"),
]


async def test_bad_arguments_exit_2_with_a_message(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    runs = await jobwire_all(["--target", target(broker)], [a for a, _ in BAD_ARGUMENTS])
    for (args, message), run in zip(BAD_ARGUMENTS, runs, strict=True):
        line = assert_clean_error(run, 2)
        assert message in line, args
        usage = run.err.rstrip("\n").split("\n")[:-1]  # argparse's usage block, if any
        assert all(u.startswith(("usage: jobwire", " ")) for u in usage), run.err
    assert await enqueue(stub, "cli") == "cli:1"  # nothing was enqueued


async def test_argparse_errors_are_one_line() -> None:
    run = await jobwire("enqueue")
    assert run.code == 2
    assert len(run.err.strip().splitlines()) == 1, run.err


async def test_unreachable_broker_exits_4() -> None:
    cases = [["get", "cli:1"], ["enqueue", "cli", "x"], ["cancel", "cli:1"]]
    runs = await jobwire_all(["--target", "127.0.0.1:1", "--timeout", "3"], cases)
    for args, run in zip(cases, runs, strict=True):
        line = assert_clean_error(run, 4)
        assert "unreachable" in line, args
        assert len(run.err.strip().splitlines()) == 1, args


async def test_unknown_job_exits_3(broker: BrokerApp) -> None:
    cases = [["get", "cli:999"], ["cancel", "cli:999"], ["watch", "cli:999"]]
    runs = await jobwire_all(["--target", target(broker)], cases)
    for args, run in zip(cases, runs, strict=True):
        line = assert_clean_error(run, 3)
        assert line == "jobwire: job cli:999 not found", args
        assert len(run.err.strip().splitlines()) == 1, args


INVALID_INPUT = [
    (["enqueue", "bad queue!", "x"], "queue"),
    (["enqueue", "cli", "x", "--priority", "5000"], "job.priority"),
    (["enqueue", "cli", "x", "--delay", "-5"], "job.delay"),
    (["get", "not-a-job-id"], "job_id"),
]


async def test_invalid_input_rejected_by_the_broker_exits_2(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    runs = await jobwire_all(["--target", target(broker)], [a for a, _ in INVALID_INPUT])
    for (args, field), run in zip(INVALID_INPUT, runs, strict=True):
        line = assert_clean_error(run, 2)
        assert line.startswith(f"jobwire: {field}: "), (args, line)
        assert len(run.err.strip().splitlines()) == 1, args
    assert await enqueue(stub, "cli") == "cli:1"  # nothing was written


# -- help -----------------------------------------------------------------------------


async def test_help_lists_every_subcommand() -> None:
    run = await jobwire("--help")
    assert (run.code, run.err) == (0, "")
    for command in ("enqueue", "get", "cancel", "watch", "worker", "serve"):
        assert command in run.out


async def test_help_description_is_a_whole_sentence() -> None:
    run = await jobwire("--help")
    description = run.out.split("\n\n")[1]
    assert description.rstrip().endswith((".", ")")), description


async def test_serve_help_delegates_to_the_broker() -> None:
    run = await jobwire("serve", "--help")
    assert (run.code, run.err) == (0, "")
    assert run.out.startswith("usage: jobwire serve")
    for flag in ("--listen", "--redis-url", "--key-prefix", "--data-dir"):
        assert flag in run.out
