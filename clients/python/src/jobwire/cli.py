"""`jobwire`: enqueue, inspect, watch and cancel jobs from a terminal, operate queues
(counts, settings, pause, drain, dead letters, workers), run workers, and (with the broker
package installed) `jobwire serve`.

Errors print one line to stderr and exit non-zero: 2 for bad arguments, 3 when the job
or queue does not exist, 4 when the broker is unreachable, 1 for anything else (and for a
confirmation answered no).
"""

import argparse
import asyncio
import importlib
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ._admin import (
    DURATION_SETTINGS,
    RATE_SETTINGS,
    Admin,
    JobFilter,
    QueueInfo,
    QueueSettings,
    RateLimit,
    RedriveProgress,
)
from ._client import DEFAULT_TARGET, Client
from ._errors import InvalidArgument, JobwireError, NotFound, Unavailable
from ._models import Backoff, BackoffKind, JobEvent, JobInfo, JobState, seconds
from ._queue_file import UNITS, parse_duration, requests_from_toml
from ._worker import Worker

DESCRIPTION = (
    "Enqueue, inspect, watch and cancel Jobwire jobs, operate queues, dead letters and"
    " workers, and run workers."
)


class OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes print `jobwire: <problem>` and exit 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog.split()[0]} --help)\n")


EXIT_CODES: list[tuple[type[JobwireError], int]] = [
    (InvalidArgument, 2),
    (NotFound, 3),
    (Unavailable, 4),
]


def parser() -> argparse.ArgumentParser:
    root = OneLineErrors(prog="jobwire", description=DESCRIPTION)
    _common_options(root, DEFAULT_TARGET, False, 10.0)
    # The same options after the subcommand too (`jobwire get ID --target ...`).
    common = OneLineErrors(add_help=False)
    _common_options(common, argparse.SUPPRESS, argparse.SUPPRESS, argparse.SUPPRESS)
    sub = root.add_subparsers(dest="command", required=True)

    enq = sub.add_parser("enqueue", help="add a job", parents=[common])
    enq.add_argument("queue")
    source = enq.add_mutually_exclusive_group(required=True)
    source.add_argument("payload", nargs="?", help="payload text (JSON is sent as JSON)")
    source.add_argument("--file", type=Path, help="read the payload from a file ('-': stdin)")
    enq.add_argument("--content-type")
    enq.add_argument("--header", action="append", default=[], metavar="KEY=VALUE")
    enq.add_argument("--priority", type=int, default=0)
    enq.add_argument("--delay", type=float, help="seconds before it is ready")
    enq.add_argument("--max-attempts", type=int, default=0)
    enq.add_argument("--idempotency-key")

    for name, text in (
        ("get", "show a job"),
        ("cancel", "cancel a job"),
        ("watch", "follow a job's progress until it ends"),
    ):
        sub.add_parser(name, help=text, parents=[common]).add_argument("job_id")

    work = sub.add_parser(
        "worker", help="run handlers: jobwire worker module:attr", parents=[common]
    )
    work.add_argument("app", help="module:attribute naming a Worker or a {queue: handler} dict")
    work.add_argument("--queue", action="append", default=[], help="only these queues")
    work.add_argument("--concurrency", type=int, help="jobs at once per queue (default 10)")
    work.add_argument("--grace", type=float, default=30.0, help="seconds to finish on stop")

    sub.add_parser(
        "serve", help="run the broker (needs the jobwire-broker package)", add_help=False
    )
    _admin_parsers(sub, common)
    return root


def _common_options(p: argparse.ArgumentParser, target: Any, as_json: Any, timeout: Any) -> None:
    p.add_argument("--target", default=target, help="broker host:port")
    p.add_argument("--json", action="store_true", default=as_json, help="machine-readable output")
    p.add_argument("--timeout", type=float, default=timeout, help="seconds per call")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if "serve" in args_list[:1]:
        return _serve(args_list[1:])
    args = parser().parse_args(args_list)
    try:
        if args.command == "worker":
            return _worker(args)
        return asyncio.run(_run(args))
    except JobwireError as err:
        print(f"jobwire: {_one_line(err)}", file=sys.stderr)
        return next((code for cls, code in EXIT_CODES if isinstance(err, cls)), 1)
    except Aborted:
        print("jobwire: aborted", file=sys.stderr)
        return 1
    except (OSError, ValueError, ImportError, AttributeError) as err:
        print(f"jobwire: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def worker_main() -> int:
    """The `jobwire-worker` script: `jobwire worker` under its own name."""
    return main(["worker", *sys.argv[1:]])


def _one_line(err: JobwireError) -> str:
    if err.violations:
        return "; ".join(f"{v.field}: {v.description}" for v in err.violations)
    if isinstance(err, Unavailable):
        return f"broker unreachable: {err.message}"
    return err.message


async def _run(args: argparse.Namespace) -> int:
    from ._client import ChannelOptions, RetryPolicy

    options = ChannelOptions(timeout_s=args.timeout)
    async with Client(args.target, options=options, retry=RetryPolicy(attempts=2)) as client:
        if getattr(args, "admin", None) is not None:
            code: int = await args.admin(Admin.from_client(client), args)
            return code
        if args.command == "enqueue":
            result = await client.enqueue(
                args.queue,
                _payload(args),
                content_type=args.content_type,
                headers=_headers(args.header),
                priority=args.priority,
                delay=args.delay,
                max_attempts=args.max_attempts,
                idempotency_key=args.idempotency_key,
            )
            _print(
                args,
                asdict(result),
                f"{result.job_id}" + (" (duplicate)" if result.duplicate else ""),
            )
        elif args.command == "get":
            info = await client.get(args.job_id)
            _print(args, _info_dict(info), _info_text(info))
        elif args.command == "cancel":
            state = await client.cancel(args.job_id)
            _print(args, {"job_id": args.job_id, "state": state.name}, state.name.lower())
        elif args.command == "watch":
            return await _watch(client, args)
    return 0


async def _watch(client: Client, args: argparse.Namespace) -> int:
    last: JobEvent | None = None
    async for event in client.watch(args.job_id):
        last = event
        if args.json:
            print(
                json.dumps(
                    {
                        "event_id": event.id,
                        "kind": event.kind,
                        "state": event.state.name,
                        "progress": asdict(event.progress) if event.progress else None,
                    }
                ),
                flush=True,
            )
        else:
            _draw(event, sys.stdout)
    if not args.json:
        print()
    return 0 if last is not None and last.state.name == "COMPLETED" else 1


def _draw(event: JobEvent, out: TextIO) -> None:
    """A one-line progress bar, redrawn in place on a terminal."""
    pct = event.progress.percent if event.progress else 0.0
    message = event.progress.message if event.progress else ""
    filled = int(pct / 100 * 30)
    bar = "#" * filled + "-" * (30 - filled)
    line = f"[{bar}] {pct:5.1f}% {event.state.name.lower():9} {message}"
    out.write(("\r" if out.isatty() else "") + line[:120] + ("" if out.isatty() else "\n"))
    out.flush()


def _payload(args: argparse.Namespace) -> Any:
    if args.file is not None:
        return sys.stdin.buffer.read() if str(args.file) == "-" else args.file.read_bytes()
    text: str = args.payload
    try:
        return json.loads(text) if text.strip()[:1] in ("{", "[") else text
    except json.JSONDecodeError:
        return text


def _headers(pairs: list[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--header wants KEY=VALUE, got {pair!r}")
        headers[key] = value
    return headers


def _info_dict(info: JobInfo) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode(errors="replace")
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return getattr(value, "name", value)

    return {k: plain(v) for k, v in asdict(info).items()} | {"state": info.state.name}


def _info_text(info: JobInfo) -> str:
    lines = [f"{info.id}  {info.state.name.lower()}  attempt {info.attempt}/{info.max_attempts}"]
    if info.progress:
        lines.append(f"progress  {info.progress.percent:g}% {info.progress.message}")
    if info.last_error:
        lines.append(f"error     {info.last_error.type}: {info.last_error.message}")
    if info.result:
        lines.append(f"result    {info.result.decode(errors='replace')[:200]}")
    return "\n".join(lines)


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, default=lambda o: getattr(o, "name", str(o))) if args.json else text)


def _worker(args: argparse.Namespace) -> int:
    module_name, _, attr = args.app.partition(":")
    target = getattr(importlib.import_module(module_name), attr or "worker")
    if isinstance(target, Worker):
        worker = target
        worker.target, worker.grace_period = args.target, args.grace
    elif isinstance(target, Mapping):
        worker = Worker(args.target, grace_period=args.grace)
        for queue, handler in target.items():
            worker.register(queue, handler)
    else:
        raise ValueError(f"{args.app} is neither a Worker nor a mapping of queue to handler")
    worker.configure(concurrency=args.concurrency, queues=args.queue or None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(worker.run())
    return 0


def _serve(rest: list[str]) -> int:
    try:
        broker_cli = importlib.import_module("jobwire_broker.cli")
    except ImportError:
        print("jobwire: `serve` needs the broker: pip install jobwire-broker", file=sys.stderr)
        return 2
    code: int = broker_cli.main(["serve", *rest])
    return code


# -- admin commands: queues, jobs, dead letters, workers --------------------------------


class Aborted(Exception):
    """A confirmation was answered with anything but yes."""


STATES = {state.name.lower(): state for state in JobState}
SETTING_NAMES = [f.name for f in fields(QueueSettings)]
AdminCommand = Callable[[Admin, argparse.Namespace], Awaitable[int]]


def _admin_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    queues = _command(sub, common, "queues", "list queues with their counts", _queues)
    queues_sub = queues.add_subparsers(dest="queues_command", metavar="{apply}")
    apply = _command(queues_sub, common, "apply", "apply a queue settings file", _queues_apply)
    apply.add_argument("file", type=Path)
    _queue_parsers(sub, common)
    _job_parsers(sub, common)
    _dead_parsers(sub, common)
    from . import _schedule_cli  # imports this module's helpers

    _schedule_cli.parsers(sub, common)
    workers = _command(sub, common, "workers", "list the workers seen in the last hour", _workers)
    workers.add_argument("--queue", default="", help="only this queue's workers")
    workers.add_argument("--all", action="store_true", help="include gone workers")


def _command(
    parent: Any, common: argparse.ArgumentParser, name: str, text: str, handler: AdminCommand
) -> argparse.ArgumentParser:
    description = text[:1].upper() + text[1:] + "."
    p: argparse.ArgumentParser = parent.add_parser(
        name, help=text, description=description, parents=[common]
    )
    p.set_defaults(admin=handler)
    return p


def _group(sub: Any, name: str, text: str, commands: Iterable[str]) -> Any:
    """A command whose subcommands name the action: `jobwire queue pause ...`."""
    group = sub.add_parser(name, help=text).add_subparsers(
        dest=f"{name}_command", required=True, metavar="{" + ",".join(commands) + "}"
    )
    return group


def _queue_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    commands = {
        "show": ("show a queue's counts, throughput, workers and settings", _queue_show),
        "pause": ("stop handing out jobs (enqueues still succeed)", _queue_pause),
        "resume": ("hand out jobs again", _queue_resume),
        "drain": ("delete every ready and scheduled job", _queue_drain),
        "delete": ("delete a queue with all its jobs", _queue_delete),
        "settings": ("show a queue's settings, or change them with --set", _queue_settings),
        "watch": ("print a queue's events as they happen", _queue_watch),
    }
    group = _group(
        sub,
        "queue",
        "show, pause, resume, drain, delete or watch a queue, or its settings",
        commands,
    )
    p = {}
    for name, (text, handler) in commands.items():
        p[name] = _command(group, common, name, text, handler)
        p[name].add_argument("queue", help="the queue's name")
    _yes(p["drain"])
    _yes(p["delete"])
    p["delete"].add_argument("--force", action="store_true", help="even while jobs are active")
    p["settings"].add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. max_attempts=5 lease_duration=30s backoff=exponential:1s:1h; "
        "KEY=default goes back to the broker's default",
    )
    p["watch"].add_argument(
        "--after", default="", metavar="EVENT_ID", help="resume after this event ('0': oldest kept)"
    )


def _job_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    group = _group(
        sub,
        "jobs",
        "list, retry, delete or promote a queue's jobs",
        ["list", "retry", "delete", "promote"],
    )
    listing = _command(group, common, "list", "list a queue's jobs in one state", _jobs_list)
    listing.add_argument("queue", help="the queue's name")
    listing.add_argument("--state", type=_state, required=True, help="|".join(STATES))
    listing.add_argument("--limit", type=int, default=100, help="at most N jobs (0: all)")
    listing.add_argument("--newest", action="store_true", help="newest first")
    _filters(listing)
    for name, text, handler in (
        ("retry", "send dead or cancelled jobs back to ready", _jobs_retry),
        ("delete", "delete jobs that are not active", _jobs_delete),
    ):
        p = _command(group, common, name, text, handler)
        p.add_argument("queue", help="the queue's name")
        p.add_argument("ids", nargs="*", metavar="ID", help="job ids (or their numbers)")
        p.add_argument("--state", type=_state, help="instead of ids: every job in this state")
        _filters(p)
        if name == "delete":
            _yes(p)
    promote = _command(group, common, "promote", "make scheduled jobs ready now", _jobs_promote)
    promote.add_argument("queue", help="the queue's name")
    promote.add_argument("ids", nargs="*", metavar="ID", help="job ids; none: every scheduled job")


def _dead_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    group = _group(
        sub, "dead", "dead-letter triage: groups, redrive, purge", ["groups", "redrive", "purge"]
    )
    groups = _command(group, common, "groups", "group a queue's dead jobs by error", _dead_groups)
    groups.add_argument("queue", help="the queue's name")

    redrive = _command(group, common, "redrive", "send dead jobs back to ready", _dead_redrive)
    redrive.add_argument("queue", help="the queue's name")
    redrive.add_argument("group", nargs="?", default="", help="a group's fingerprint; none: all")
    redrive.add_argument(
        "--rate", type=float, default=100.0, help="jobs per second (default 100; 0: no limit)"
    )
    redrive.add_argument("--limit", type=int, default=0, help="at most N jobs, oldest first")
    redrive.add_argument("--dry-run", action="store_true", help="count only")
    redrive.add_argument("--error-type", default="", help="only jobs whose error has this type")

    purge = _command(group, common, "purge", "delete dead jobs", _dead_purge)
    purge.add_argument("queue", help="the queue's name")
    purge.add_argument("group", nargs="?", default="", help="a group's fingerprint")
    purge.add_argument("--older-than", type=_duration, help="dead longer than this, e.g. 7d")
    purge.add_argument("--all", action="store_true", help="every dead job")
    purge.add_argument("--dry-run", action="store_true", help="count only")
    _yes(purge)


def _yes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--error-type", default="", help="only jobs whose last error has this type")
    p.add_argument("--header", default="", metavar="KEY[=VALUE]", help="only jobs with it")
    p.add_argument("--fingerprint", default="", help="only this dead-letter group's jobs")


def _state(text: str) -> JobState:
    state = STATES.get(text.lower())
    if state is None:
        raise argparse.ArgumentTypeError(f"not a job state: {text!r} (one of {', '.join(STATES)})")
    return state


def _duration(text: str) -> float:
    """Seconds from `30s`, `500ms`, `5m`, `1h30m`, `7d`, or a plain number of seconds."""
    try:
        return parse_duration(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _fmt_duration(seconds: float | None) -> str:
    """`500ms`, `30s`, `1m15s`, `7d`: whole units where they fit."""
    if seconds is None:
        return "none"
    if 0 < seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds < 60 or not float(seconds).is_integer():
        return f"{seconds:g}s"
    out, rest = "", int(seconds)
    for unit in ("d", "h", "m", "s"):
        count, rest = divmod(rest, int(UNITS[unit]))
        out += f"{count}{unit}" if count else ""
    return out


def _fmt_age(seconds: float | None) -> str:
    """An age, to a tenth of a second below 10 s and to the second above."""
    if seconds is None:
        return "-"
    return _fmt_duration(round(seconds, 1) if seconds < 10 else float(round(seconds)))


def _ago(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = max(0.0, (datetime.now(UTC) - when).total_seconds())
    for unit in ("d", "h", "m"):
        if seconds >= UNITS[unit]:
            return f"{int(seconds // UNITS[unit])}{unit} ago"
    return f"{int(seconds)}s ago"


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: dataclasses as objects, enums by name, times in ISO
    8601, durations in seconds, bytes as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(_plain(data)) if args.json else text, flush=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> str:
    """Columns padded to fit; numbers right-aligned."""
    if not rows:
        return empty
    cells = [list(header), *[[str(c) for c in row] for row in rows]]
    numeric = [all(isinstance(row[i], int) for row in rows) for i in range(len(header))]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for line in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(line, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


async def _confirm(args: argparse.Namespace, question: str) -> None:
    """Asks on a terminal (unless --yes); scripts and pipes are not asked."""
    if args.yes or not sys.stdin.isatty():
        return
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = await asyncio.to_thread(sys.stdin.readline)
    if answer.strip().lower() not in ("y", "yes"):
        raise Aborted


def _job_filter(args: argparse.Namespace) -> JobFilter | None:
    key, _, value = args.header.partition("=")
    if not (args.error_type or key or args.fingerprint):
        return None
    return JobFilter(args.error_type, key, value, args.fingerprint)


def _job_ids(queue: str, ids: Sequence[str]) -> list[str]:
    """Job ids as given, or `<queue>:<n>` for a bare number."""
    return [f"{queue}:{i}" if i.isdigit() else i for i in ids]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# queues


async def _queues(admin: Admin, args: argparse.Namespace) -> int:
    queues = await admin.list_queues()
    rows = [
        [
            q.name,
            "paused" if q.paused else "running",
            q.counts.scheduled,
            q.counts.ready,
            q.counts.active,
            q.counts.completed,
            q.counts.dead,
            q.counts.cancelled,
            _fmt_age(q.oldest_ready_age),
            q.completed_last_minute,
            q.failed_last_minute,
            len(q.workers),
        ]
        for q in queues
    ]
    header = ["QUEUE", "STATE", "SCHEDULED", "READY", "ACTIVE", "COMPLETED", "DEAD"]
    header += ["CANCELLED", "OLDEST READY", "DONE/MIN", "FAILED/MIN", "WORKERS"]
    _out(args, queues, _table(header, rows, "no queues"))
    return 0


async def _queues_apply(admin: Admin, args: argparse.Namespace) -> int:
    requests = requests_from_toml(args.file.read_text(), str(args.file))
    before = {q.name: q.settings for q in await admin.list_queues()}
    results = []
    for request in requests:
        after = await admin.update_queue(
            request.queue, request.settings, list(request.update_mask.paths)
        )
        if request.queue not in before:
            status = "created"
        else:
            status = "unchanged" if before[request.queue] == after.settings else "updated"
        results.append({"queue": after.name, "status": status, "settings": after.settings})
    text = "\n".join(f"{r['queue']}: {r['status']}" for r in results) or "no queues in the file"
    _out(args, results, text)
    return 0


# queue


async def _queue_show(admin: Admin, args: argparse.Namespace) -> int:
    q = await admin.get_queue(args.queue)
    c = q.counts
    hour = [sum(getattr(m, k) for m in q.last_hour) for k in ("completed", "failed", "dead")]
    lines = [
        f"queue       {q.name}" + ("  (paused)" if q.paused else ""),
        f"jobs        scheduled {c.scheduled}  ready {c.ready}  active {c.active}  "
        f"completed {c.completed}  dead {c.dead}  cancelled {c.cancelled}",
        "oldest      "
        + (f"ready for {_fmt_age(q.oldest_ready_age)}" if q.oldest_ready_age is not None else "-"),
        f"last min    completed {q.completed_last_minute}  failed {q.failed_last_minute}",
        f"last hour   completed {hour[0]}  failed {hour[1]}  dead {hour[2]}",
        "workers     " + (", ".join(q.workers) or "-"),
        "",
        _settings_table(q),
    ]
    _out(args, q, "\n".join(lines))
    return 0


async def _queue_pause(admin: Admin, args: argparse.Namespace) -> int:
    await admin.pause_queue(args.queue)
    _out(args, {"queue": args.queue, "paused": True}, f"paused {args.queue}")
    return 0


async def _queue_resume(admin: Admin, args: argparse.Namespace) -> int:
    await admin.resume_queue(args.queue)
    _out(args, {"queue": args.queue, "paused": False}, f"resumed {args.queue}")
    return 0


async def _queue_drain(admin: Admin, args: argparse.Namespace) -> int:
    counts = (await admin.get_queue(args.queue)).counts
    waiting = counts.ready + counts.scheduled
    await _confirm(
        args, f"Delete the {_plural(waiting, 'ready or scheduled job')} of {args.queue}?"
    )
    deleted = await admin.drain_queue(args.queue)
    _out(
        args,
        {"queue": args.queue, "deleted": deleted},
        f"drained {args.queue}: deleted {_plural(deleted, 'job')}",
    )
    return 0


async def _queue_delete(admin: Admin, args: argparse.Namespace) -> int:
    total = (await admin.get_queue(args.queue)).counts.total
    await _confirm(args, f"Delete queue {args.queue} and its {_plural(total, 'job')}?")
    deleted = await admin.delete_queue(args.queue, force=args.force)
    _out(
        args,
        {"queue": args.queue, "deleted": deleted},
        f"deleted queue {args.queue} ({_plural(deleted, 'job')})",
    )
    return 0


async def _queue_settings(admin: Admin, args: argparse.Namespace) -> int:
    if args.set:
        settings, mask = _settings_change(args.set)
        q = await admin.update_queue(args.queue, settings, mask)
    else:
        q = await admin.get_queue(args.queue)
    data = {"queue": q.name, "settings": q.settings, "effective_settings": q.effective_settings}
    _out(args, data, _settings_table(q))
    return 0


def _settings_change(pairs: Sequence[str]) -> tuple[QueueSettings, list[str]]:
    """`--set` pairs as settings and the field mask naming them; `KEY=default` is in
    the mask and unset, so it goes back to the broker's default."""
    values: dict[str, Any] = {}
    mask: list[str] = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set wants KEY=VALUE, got {pair!r}")
        if key not in SETTING_NAMES:
            raise ValueError(f"--set: unknown setting {key!r} (one of {', '.join(SETTING_NAMES)})")
        if key not in mask:
            mask.append(key)
        if raw.strip().lower() == "default":
            values.pop(key, None)
            continue
        try:
            values[key] = _setting_value(key, raw.strip())
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise ValueError(f"--set {key}: {err}") from None
    return QueueSettings(**values), mask


def _setting_value(key: str, raw: str) -> Any:
    if key == "backoff":
        return _backoff(raw)
    if key in DURATION_SETTINGS:
        return _duration(raw)
    if key in RATE_SETTINGS:  # LIMIT/PERIOD, e.g. 10/1s
        limit, slash, period = raw.partition("/")
        if not slash or not re.fullmatch(r"\d+", limit):
            raise ValueError(f"not a rate limit: {raw!r} (LIMIT/PERIOD, e.g. 10/1s)")
        return RateLimit(int(limit), _duration(period))
    if not re.fullmatch(r"-?\d+", raw):
        raise ValueError(f"not a whole number: {raw!r}")
    return int(raw)


def _backoff(raw: str) -> Backoff:
    """`fixed:5s`, `linear:10s[:MAX]`, `exponential:1s[:MAX[:MULTIPLIER[:JITTER]]]`."""
    kind_name, *rest = raw.split(":")
    kinds = {k.name.lower(): k for k in BackoffKind}
    kind = kinds.get(kind_name.lower())
    if kind is None or not rest or len(rest) > 4:
        raise ValueError(
            f"not a backoff: {raw!r} (fixed:5s, linear:10s:5m, exponential:1s:1h:2:0.1)"
        )
    initial = _duration(rest[0])
    maximum = _duration(rest[1]) if len(rest) > 1 else initial if kind.name == "FIXED" else 3600.0
    multiplier = float(rest[2]) if len(rest) > 2 else 2.0
    jitter = float(rest[3]) if len(rest) > 3 else 0.0
    return Backoff(kind, initial, maximum, multiplier, jitter)


def _fmt_backoff(b: Backoff | None) -> str:
    if b is None:
        return "none"
    initial, maximum = _fmt_duration(seconds(b.initial)), _fmt_duration(seconds(b.max))
    if b.kind is BackoffKind.FIXED:
        return f"fixed {initial}"
    if b.kind is BackoffKind.LINEAR:
        return f"linear {initial} up to {maximum}"
    text = f"exponential {initial} x{b.multiplier:g} up to {maximum}"
    return text + (f" jitter {b.jitter:g}" if b.jitter else "")


def _settings_table(q: QueueInfo) -> str:
    stored = set(q.settings.fields_set())
    rows = []
    for name in SETTING_NAMES:
        value = getattr(q.effective_settings, name)
        if name == "backoff":
            text = _fmt_backoff(value)
        elif name == "execution_timeout" and not value:
            text = "none"  # 0 s: no timeout
        elif name.endswith(("_duration", "_age")):
            text = _fmt_duration(value)
        elif name.endswith("rate_limit") and value is not None:
            text = f"{value.limit} per {_fmt_duration(seconds(value.period))}"
        else:
            text = "-" if value is None else str(value)
        rows.append([name, text, "set" if name in stored else "default"])
    return _table(["SETTING", "VALUE", "SOURCE"], rows, "")


async def _queue_watch(admin: Admin, args: argparse.Namespace) -> int:
    async for event in admin.watch_queue(args.queue, args.after):
        if args.json:
            _out(args, event, "")
            continue
        parts = [
            event.at.strftime("%H:%M:%S.%f")[:-3] if event.at else "-",
            event.kind.name.lower(),
            event.job_id or args.queue,
        ]
        if event.state is not None:
            parts.append(f"{event.state.name.lower()} attempt {event.attempt}")
        if event.progress:
            parts.append(f"{event.progress.percent:g}% {event.progress.message}".rstrip())
        if event.error:
            parts.append(f"{event.error.type}: {event.error.message}")
        if event.gap:
            parts.append("(earlier events were trimmed)")
        _out(args, None, "  ".join(parts))
    return 0


# jobs


async def _jobs_list(admin: Admin, args: argparse.Namespace) -> int:
    jobs = [
        job
        async for job in admin.iter_jobs(
            args.queue,
            args.state,
            newest_first=args.newest,
            filter=_job_filter(args),
            limit=args.limit or None,
        )
    ]
    rows = []
    for job in jobs:
        error = f"{job.last_error.type}: {job.last_error.message}" if job.last_error else ""
        when = job.finished_at if job.state.terminal else job.created_at
        rows.append([job.id, job.state.name.lower(), job.attempt, _ago(when), error[:80]])
    header = ["JOB", "STATE", "ATTEMPT", "FINISHED" if args.state.terminal else "CREATED", "ERROR"]
    _out(args, jobs, _table(header, rows, f"no {args.state.name.lower()} jobs"))
    return 0


def _selection(args: argparse.Namespace) -> dict[str, Any]:
    if bool(args.ids) == (args.state is not None):
        raise ValueError(
            "give job ids or --state, not both" if args.ids else "give job ids or --state"
        )
    where = _job_filter(args)
    if args.ids and where is not None:
        raise ValueError("--error-type, --header and --fingerprint go with --state, not ids")
    return {"job_ids": _job_ids(args.queue, args.ids), "state": args.state, "filter": where}


async def _jobs_retry(admin: Admin, args: argparse.Namespace) -> int:
    retried = await admin.retry_jobs(args.queue, **_selection(args))
    _out(args, {"queue": args.queue, "retried": retried}, f"retried {_plural(retried, 'job')}")
    return 0


async def _jobs_delete(admin: Admin, args: argparse.Namespace) -> int:
    selected = _selection(args)
    if args.ids:
        question = f"Delete {_plural(len(args.ids), 'job')} of {args.queue}?"
    else:
        which = "matching " if selected["filter"] else ""
        question = f"Delete every {which}{args.state.name.lower()} job of {args.queue}?"
    await _confirm(args, question)
    deleted = await admin.delete_jobs(args.queue, **selected)
    _out(args, {"queue": args.queue, "deleted": deleted}, f"deleted {_plural(deleted, 'job')}")
    return 0


async def _jobs_promote(admin: Admin, args: argparse.Namespace) -> int:
    promoted = await admin.promote_jobs(args.queue, _job_ids(args.queue, args.ids))
    data = {"queue": args.queue, "promoted": promoted}
    _out(args, data, f"promoted {_plural(promoted, 'job')}")
    return 0


# dead letters


async def _dead_groups(admin: Admin, args: argparse.Namespace) -> int:
    groups = [g async for g in admin.iter_dead_letter_groups(args.queue)]
    rows = [
        [g.fingerprint, g.count, _ago(g.last_seen_at), f"{g.error_type}: {g.message_template}"[:90]]
        for g in groups
    ]
    header = ["GROUP", "COUNT", "LAST SEEN", "ERROR"]
    _out(args, groups, _table(header, rows, f"no dead jobs in {args.queue}"))
    return 0


async def _dead_redrive(admin: Admin, args: argparse.Namespace) -> int:
    where = JobFilter(error_type=args.error_type) if args.error_type else None
    bar = sys.stdout.isatty() and not args.json and not args.dry_run
    start, shown, last = time.monotonic(), "", None
    async for progress in admin.redrive_dead_letters(
        args.queue,
        args.group,
        filter=where,
        rate=args.rate,
        dry_run=args.dry_run,
        limit=args.limit,
    ):
        last = progress
        if args.json:
            _out(args, progress, "")
        elif bar:
            _draw_redrive(progress, time.monotonic() - start, sys.stdout)
        elif not args.dry_run:
            line = f"redriven {progress.redriven}/{progress.matched}"
            if line != shown:
                print(line, flush=True)
                shown = line
    if last is None or args.json:
        return 0
    if bar:
        print()
    if args.dry_run:
        print(f"would redrive {_plural(last.matched, 'dead job')} of {args.queue}")
    else:
        print(f"redrove {last.redriven} of {_plural(last.matched, 'dead job')} of {args.queue}")
    return 0


def _draw_redrive(p: RedriveProgress, elapsed: float, out: TextIO) -> None:
    share = p.redriven / p.matched if p.matched else 1.0
    filled = int(share * 30)
    rate = p.redriven / elapsed if elapsed > 0 else 0.0
    line = f"[{'#' * filled}{'-' * (30 - filled)}] {p.redriven}/{p.matched}  {rate:.0f} jobs/s"
    out.write("\r" + line)
    out.flush()


async def _dead_purge(admin: Admin, args: argparse.Namespace) -> int:
    if args.all and (args.group or args.older_than is not None):
        raise ValueError("--all takes neither a group nor --older-than")
    if not (args.all or args.group or args.older_than is not None):
        raise ValueError("give a group, --older-than or --all")
    which = {"fingerprint": args.group, "older_than": args.older_than, "all": args.all}
    if not args.dry_run and not args.yes and sys.stdin.isatty():
        count = await admin.purge_dead_letters(args.queue, dry_run=True, **which)
        await _confirm(args, f"Delete {_plural(count, 'dead job')} of {args.queue}?")
    purged = await admin.purge_dead_letters(args.queue, dry_run=args.dry_run, **which)
    verb = "would purge" if args.dry_run else "purged"
    data = {"queue": args.queue, "purged": purged, "dry_run": args.dry_run}
    _out(args, data, f"{verb} {_plural(purged, 'dead job')} of {args.queue}")
    return 0


# workers


async def _workers(admin: Admin, args: argparse.Namespace) -> int:
    workers = await admin.list_workers(args.queue, include_gone=args.all)
    rows = [
        [
            w.id,
            w.state.name.lower(),
            w.in_flight,
            _ago(w.last_lease_at),
            _ago(w.last_heartbeat_at),
            ", ".join(w.queues),
        ]
        for w in workers
    ]
    header = ["WORKER", "STATE", "IN FLIGHT", "LAST LEASE", "LAST HEARTBEAT", "QUEUES"]
    _out(args, workers, _table(header, rows, "no workers"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
