"""What `appendfsync always` (the embedded Valkey's default) costs against `everysec`:
a real broker (`jobwire serve`) on each of two embedded Valkeys, started by the broker's
own EmbeddedValkey with AOF on and the data on disk, measured side by side in the same
run, alternating which goes first in each round. Payloads and batch sizes are the
standard workload's (docs/benchmark.md), on fewer jobs so the run stays short.

    python bench/fsync.py [--jobs 3000] [--repeat 3] [--data-dir DIR] [--json out.json]

Figures (jobs/s; each from an empty store, median and min-max over the rounds):
enqueue one by one, each awaited (one fsync per job with `always`); 100 concurrent
Enqueue calls (fsyncs shared by the calls Valkey serves in one event-loop turn); batches
of 1000 (one fsync per batch); Lease 50 + SettleBatch 50 on a pre-filled queue.
"""

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from _valkey import flush
from core import (
    Broker,
    Figure,
    drain_batched,
    enqueue_batches,
    enqueue_concurrent,
    enqueue_one_by_one,
)
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire_broker.embedded import FSYNC_POLICIES, EmbeddedValkey
from redis.asyncio import Redis

ENQUEUE: dict[str, Figure] = {
    "enqueue 1-by-1": enqueue_one_by_one,
    "enqueue 100 concurrent": enqueue_concurrent,
    "enqueue batch 1000": enqueue_batches,
}
DRAIN: dict[str, Figure] = {
    "lease 50 + settle 50, c=1": lambda s, n: drain_batched(s, n, 1),
}
Runs = dict[str, dict[str, list[float]]]  # policy -> figure -> jobs/s per round


async def appendfsync_of(port: int) -> str:
    """What the server says it runs with, so the table cannot lie about it."""
    async with Redis(port=port, decode_responses=True) as redis:
        reply = await redis.config_get("appendfsync")
    return str(reply["appendfsync"])


def fdatasync_ms(folder: Path, n: int = 200) -> float:
    """Median ms for a small append + fdatasync in `folder`: what `always` adds to each
    event-loop turn of Valkey. It moves with whatever else writes to the disk."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    times = []
    try:
        for _ in range(n):
            start = time.perf_counter()
            os.write(fd, b"x" * 300)
            os.fdatasync(fd)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(times)


async def one_round(stub: rpc.BrokerServiceStub, port: int, n: int) -> dict[str, float]:
    out = {}
    for name, figure in ENQUEUE.items():
        flush("127.0.0.1", port)
        start = time.perf_counter()
        await figure(stub, n)
        out[name] = n / (time.perf_counter() - start)
    for name, figure in DRAIN.items():
        flush("127.0.0.1", port)
        await enqueue_batches(stub, n)  # pre-fill, not timed
        start = time.perf_counter()
        await figure(stub, n)
        out[name] = n / (time.perf_counter() - start)
    return out


async def run(args: argparse.Namespace) -> Runs:
    runs: Runs = {p: {name: [] for name in [*ENQUEUE, *DRAIN]} for p in FSYNC_POLICIES}
    with tempfile.TemporaryDirectory(prefix="jobwire-fsync-", dir=args.data_dir) as data:
        servers = {p: EmbeddedValkey(Path(data) / p, appendfsync=p) for p in FSYNC_POLICIES}
        brokers: dict[str, Broker] = {}
        channels: dict[str, grpc.aio.Channel] = {}
        try:
            for policy, server in servers.items():
                await server.start()
                assert await appendfsync_of(server.port) == policy
                brokers[policy] = Broker(server.url)
                channels[policy] = grpc.aio.insecure_channel(f"127.0.0.1:{brokers[policy].port}")
            stubs = {p: rpc.BrokerServiceStub(c) for p, c in channels.items()}
            for policy in FSYNC_POLICIES:
                await enqueue_batches(stubs[policy], 1_000)  # warm up connections and scripts
            probes = [fdatasync_ms(Path(data))]
            for i in range(args.repeat):
                order = FSYNC_POLICIES if i % 2 == 0 else FSYNC_POLICIES[::-1]
                for policy in order:
                    figures = await one_round(stubs[policy], servers[policy].port, args.jobs)
                    for name, value in figures.items():
                        runs[policy][name].append(value)
            probes.append(fdatasync_ms(Path(data)))
        finally:
            for channel in channels.values():
                await channel.close(None)
            for broker in brokers.values():
                broker.stop()
            for server in servers.values():
                await server.stop()
        print(
            f"appendfsync always vs everysec: jobwire serve on an embedded Valkey (AOF), "
            f"{args.jobs} jobs x {args.repeat}\ndata in {data}; an fdatasync there took "
            f"{probes[0]:.2f} ms before the rounds, {probes[1]:.2f} ms after (median)"
        )
    print(table(runs))
    return runs


def cell(values: list[float]) -> str:
    spread = f"({min(values):,.0f}-{max(values):,.0f})"
    return f"{statistics.median(values):>8,.0f} {spread:<17}"


def table(runs: Runs) -> str:
    """Median (min-max) jobs/s per policy, and always as a share of everysec."""
    always, everysec = runs["always"], runs["everysec"]
    lines = [f"{'jobs/s':27} {'always':>8} {'':17} {'everysec':>8} {'':17} always/everysec"]
    for name in always:
        ratio = statistics.median(always[name]) / statistics.median(everysec[name])
        lines.append(f"{name:27} {cell(always[name])} {cell(everysec[name])} {ratio:>7.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3_000, help="jobs per figure and round")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per policy")
    parser.add_argument(
        "--data-dir",
        help="where the temporary AOF directories go (default: the system temp dir); "
        "put it on the disk the broker's data will live on",
    )
    parser.add_argument("--json", help="write the runs to this file")
    args = parser.parse_args()
    runs = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
