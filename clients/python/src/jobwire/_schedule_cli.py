"""`jobwire schedules` (list, or `apply FILE`) and `jobwire schedule
show|pause|resume|delete NAME`: the schedule commands of the CLI (cli.py)."""

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from ._admin import Admin
from ._errors import AlreadyExists
from ._models import seconds
from ._schedule_file import schedules_from_toml, update_request
from ._schedules import Schedule
from .cli import _command, _fmt_duration, _group, _out, _table

_when = "%Y-%m-%d %H:%M:%SZ"


def parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    listing = _command(sub, common, "schedules", "list schedules with their next runs", _list)
    listing.add_argument("--queue", default="", help="only this queue's schedules")
    listing_sub = listing.add_subparsers(dest="schedules_command", metavar="{apply}")
    apply = _command(listing_sub, common, "apply", "apply a schedules file", _apply)
    apply.add_argument("file", type=Path)
    commands = {
        "show": ("show a schedule with its next five runs", _show),
        "pause": ("stop firing (ticks while paused are skipped)", _pause),
        "resume": ("fire again from the next tick", _resume),
        "delete": ("delete a schedule (the jobs it fired stay)", _delete),
    }
    group = _group(sub, "schedule", "show, pause, resume or delete a schedule", commands)
    for name, (text, handler) in commands.items():
        _command(group, common, name, text, handler).add_argument("name", help="its name")


def _data(s: Schedule) -> dict[str, Any]:
    """A schedule as --json prints it: its job as the JobSpec's JSON form."""
    out: dict[str, Any] = {f.name: getattr(s, f.name) for f in fields(s)}
    out["job"] = json_format.MessageToDict(s.job)
    return out


def _fmt_when(s: Schedule) -> str:
    if s.cron:
        return s.cron + (f" ({s.time_zone})" if s.time_zone else "")
    return "every " + _fmt_duration(seconds(s.interval) if s.interval is not None else None)


def _next(s: Schedule) -> str:
    return s.next_run_times[0].strftime(_when) if s.next_run_times else "-"


async def _list(admin: Admin, args: argparse.Namespace) -> int:
    found = await admin.schedules.list(args.queue)
    rows = [
        [
            s.name,
            s.queue,
            _fmt_when(s),
            "paused" if s.paused else "active",
            _next(s),
            s.last_tick_time.strftime(_when) if s.last_tick_time else "-",
            s.last_job_id or "-",
        ]
        for s in found
    ]
    header = ["SCHEDULE", "QUEUE", "WHEN", "STATE", "NEXT RUN", "LAST TICK", "LAST JOB"]
    _out(args, [_data(s) for s in found], _table(header, rows, "no schedules"))
    return 0


async def _apply(admin: Admin, args: argparse.Namespace) -> int:
    """Creates each schedule of the file, or makes an existing one what the file says."""
    results = []
    for proto in schedules_from_toml(args.file.read_text(), str(args.file)):
        try:
            after = await admin.schedules.create(Schedule.from_proto(proto))
            status = "created"
        except AlreadyExists:
            before = await admin.schedules.get(proto.name)
            request = update_request(proto)
            reply = await admin.schedules._call(
                "UpdateSchedule", admin.schedules.stub.UpdateSchedule, request
            )
            after = Schedule.from_proto(reply.schedule)
            same = _settable(before) == _settable(after)
            status = "unchanged" if same else "updated"
        results.append({"schedule": after.name, "status": status, "settings": _data(after)})
    text = "\n".join(f"{r['schedule']}: {r['status']}" for r in results)
    _out(args, results, text or "no schedules in the file")
    return 0


def _settable(s: Schedule) -> tuple[Any, ...]:
    return (
        s.queue,
        s.cron,
        s.time_zone,
        s.interval,
        s.start_within,
        s.overlap,
        s.catch_up,
        s.catch_up_limit,
        s.job,
    )


def _show_text(s: Schedule) -> str:
    lines = [
        f"schedule    {s.name}" + ("  (paused)" if s.paused else ""),
        f"queue       {s.queue}",
        f"when        {_fmt_when(s)}",
        f"overlap     {s.overlap.name.lower()}",
        f"catch-up    {s.catch_up.name.lower()} (limit {s.catch_up_limit})",
        "last tick   " + (s.last_tick_time.strftime(_when) if s.last_tick_time else "-"),
        f"last job    {s.last_job_id or '-'}",
        "next runs   " + (", ".join(t.strftime(_when) for t in s.next_run_times) or "-"),
    ]
    return "\n".join(lines)


async def _show(admin: Admin, args: argparse.Namespace) -> int:
    s = await admin.schedules.get(args.name)
    _out(args, _data(s), _show_text(s))
    return 0


async def _pause(admin: Admin, args: argparse.Namespace) -> int:
    s = await admin.schedules.pause(args.name)
    _out(args, _data(s), f"paused {s.name}")
    return 0


async def _resume(admin: Admin, args: argparse.Namespace) -> int:
    s = await admin.schedules.resume(args.name)
    _out(args, _data(s), f"resumed {s.name}, next run {_next(s)}")
    return 0


async def _delete(admin: Admin, args: argparse.Namespace) -> int:
    await admin.schedules.delete(args.name)
    _out(args, {"schedule": args.name, "deleted": True}, f"deleted {args.name}")
    return 0
