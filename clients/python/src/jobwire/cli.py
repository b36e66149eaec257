"""`jobwire`: enqueue, inspect, watch and cancel jobs from a terminal, run workers, and
(with the broker package installed) `jobwire serve`.

Errors print one line to stderr and exit non-zero: 2 for bad arguments, 3 when the job
does not exist, 4 when the broker is unreachable, 1 for anything else.
"""

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

from ._client import DEFAULT_TARGET, Client
from ._errors import InvalidArgument, JobwireError, NotFound, Unavailable
from ._models import JobEvent, JobInfo
from ._worker import Worker

DESCRIPTION = "Enqueue, inspect, watch and cancel Jobwire jobs, and run workers."


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


if __name__ == "__main__":
    sys.exit(main())
