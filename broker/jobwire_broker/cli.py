"""`jobwire serve`: runs one broker replica until SIGTERM or SIGINT. The same command is
reached as `jobwire serve` (the SDK's CLI delegates here), `python -m jobwire_broker
serve` and the `jobwire-broker serve` script; its help and errors call it `jobwire serve`,
the name the README documents."""

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path

from . import queue_file, ready, schedule_file
from .config import Settings, env
from .domain.limits import Limits
from .embedded import FSYNC_POLICIES
from .server import BrokerApp
from .telemetry import Telemetry, setup

PROG = "jobwire"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def fsync_policy(value: str) -> str:
    """--fsync's type: also checks a JOBWIRE_FSYNC default, which `choices` does not."""
    if value not in FSYNC_POLICIES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(FSYNC_POLICIES)})"
        )
    return value


def log_level(value: str) -> str:
    if value.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(LOG_LEVELS)})"
        )
    return value.upper()


def ready_file(value: str) -> Path | None:
    return Path(value) if value else None


def parser() -> argparse.ArgumentParser:
    d = Settings()
    root = argparse.ArgumentParser(prog=PROG, description="Jobwire job broker.")
    commands = root.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a broker replica")
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=env("LISTEN", d.listen),
        help="host:port to serve gRPC on (JOBWIRE_LISTEN)",
    )
    serve.add_argument(
        "--redis-url",
        metavar="URL",
        default=env("REDIS_URL", d.redis_url),
        help="redis://, rediss:// or unix:// URL; empty starts an embedded "
        "Valkey (JOBWIRE_REDIS_URL)",
    )
    serve.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        default=Path(env("DATA_DIR", str(d.data_dir))),
        help="data directory of the embedded Valkey (JOBWIRE_DATA_DIR)",
    )
    serve.add_argument(
        "--key-prefix",
        metavar="PREFIX",
        default=env("KEY_PREFIX", d.key_prefix),
        help="prefix of every Redis key (JOBWIRE_KEY_PREFIX)",
    )
    serve.add_argument(
        "--max-payload-bytes",
        metavar="BYTES",
        type=int,
        default=int(env("MAX_PAYLOAD_BYTES", str(d.limits.max_payload_bytes))),
        help="largest payload or result accepted (JOBWIRE_MAX_PAYLOAD_BYTES)",
    )
    serve.add_argument(
        "--grace",
        metavar="SECONDS",
        type=float,
        default=float(env("GRACE", str(d.grace_s))),
        help="seconds in-flight calls get on shutdown (JOBWIRE_GRACE)",
    )
    serve.add_argument(
        "--fsync",
        type=fsync_policy,
        choices=FSYNC_POLICIES,
        default=env("FSYNC", d.embedded_fsync),
        help="appendfsync of the embedded Valkey: always (default) writes each change to "
        "disk before the broker replies; everysec is faster but a machine crash can lose "
        "the last second or so of acknowledged jobs. Not used with --redis-url "
        "(JOBWIRE_FSYNC)",
    )
    serve.add_argument(
        "--embedded-restart-delay",
        metavar="SECONDS",
        type=float,
        default=float(env("EMBEDDED_RESTART_DELAY", str(d.embedded_restart_delay_s))),
        help="seconds before restarting a crashed embedded Valkey (JOBWIRE_EMBEDDED_RESTART_DELAY)",
    )
    serve.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=int,
        default=int(env("METRICS_PORT", str(d.metrics_port))),
        help="serve Prometheus /metrics on this port, on --listen's host; 0: off "
        "(JOBWIRE_METRICS_PORT). Traces and OTLP metrics follow the OTEL_* variables",
    )
    serve.add_argument(
        "--ready-file",
        metavar="PATH",
        type=ready_file,
        default=env("READY_FILE", ""),
        help="once serving, write one JSON object to PATH, atomically: "
        '{"version": 1, "pid": N, "grpc_address": "HOST:PORT", "grpc_port": PORT, '
        '"metrics_port": PORT or 0}, with the bound port (useful with --listen HOST:0); '
        "removed on a clean shutdown. Its directory must exist and be writable, or start-up "
        "fails with exit code 2 (JOBWIRE_READY_FILE)",
    )
    serve.add_argument(
        "--queues",
        metavar="FILE",
        type=ready_file,
        default=env("QUEUES", ""),
        help="a queue settings file (TOML, see docs/queues.md) applied before serving: "
        "each queue it names gets exactly the settings written there, the rest go back "
        "to the defaults. A bad file stops start-up with exit code 2 (JOBWIRE_QUEUES)",
    )
    serve.add_argument(
        "--schedules",
        metavar="FILE",
        type=ready_file,
        default=env("SCHEDULES", ""),
        help="a schedules file (TOML, see docs/schedules.md) applied before serving: each "
        "schedule it names is created, or made exactly what the file says. A bad file "
        "stops start-up with exit code 2 (JOBWIRE_SCHEDULES)",
    )
    serve.add_argument(
        "--log-level",
        type=log_level,
        metavar="LEVEL",
        default=env("LOG_LEVEL", "INFO"),
        help=f"least severe log records written to stderr: {', '.join(LOG_LEVELS)} "
        "(JOBWIRE_LOG_LEVEL; default INFO)",
    )
    return root


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        listen=args.listen,
        redis_url=args.redis_url,
        data_dir=args.data_dir,
        key_prefix=args.key_prefix,
        grace_s=args.grace,
        embedded_restart_delay_s=args.embedded_restart_delay,
        embedded_fsync=args.fsync,
        metrics_port=args.metrics_port,
        ready_file=args.ready_file,
        queues_file=args.queues,
        schedules_file=args.schedules,
        limits=dataclasses.replace(Limits(), max_payload_bytes=args.max_payload_bytes),
    )


def metrics_address(settings: Settings) -> tuple[str, int] | None:
    """Where /metrics is served: --listen's host, --metrics-port."""
    if not settings.metrics_port:
        return None
    host = settings.listen.rpartition(":")[0].strip("[]") or "0.0.0.0"
    return host, settings.metrics_port


async def serve(settings: Settings, telemetry: Telemetry | None = None) -> None:
    app = BrokerApp(settings, telemetry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await app.start()
    if settings.ready_file:
        try:
            facts = ready.facts(settings.listen, app.port, settings.metrics_port)
            ready.write(settings.ready_file, facts)
        except ready.ReadyFileError:
            await app.stop(grace_s=0)
            raise
    print(f"jobwire: serving on {settings.listen} (port {app.port})", flush=True)
    await stop.wait()
    logging.getLogger(__name__).info("shutting down")
    if settings.ready_file:
        ready.remove(settings.ready_file)  # first: a broker on its way out is not ready
    await app.stop()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        settings = settings_from(args)
        try:
            if settings.ready_file:
                ready.check(settings.ready_file)  # before Valkey or a port is taken
            if settings.queues_file:
                queue_file.load(settings.queues_file, settings.limits, settings.defaults)
            if settings.schedules_file:
                schedule_file.load(settings.schedules_file, settings.limits, settings.defaults)
            telemetry = setup(metrics_address(settings))
        except (ValueError, ready.ReadyFileError) as exc:  # QueueFileError is a ValueError
            print(f"{PROG} serve: {exc}", file=sys.stderr)
            return 2
        try:
            asyncio.run(serve(settings, telemetry))
        except ready.ReadyFileError as exc:  # its directory went away since the check
            print(f"{PROG} serve: {exc}", file=sys.stderr)
            return 2
        finally:
            telemetry.shutdown()  # after the loop: flushes spans and metrics still buffered
    return 0


if __name__ == "__main__":
    sys.exit(main())
