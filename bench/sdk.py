"""The standard benchmark (docs/benchmark.md) for the Python SDK through the broker,
side by side with BullMQ's Node worker on the same Valkey, in the same run.

    python bench/sdk.py [--jobs 20000] [--repeat 3] [--no-bullmq] [--only process,...]

Figures: enqueue (1-by-1, 100 concurrent, batches of 1000) with jobwire.Client;
process jobs/s with jobwire.Worker at concurrency 1, 10, 50 on a pre-filled queue
(N / worker start -> N-th completion acknowledged); end-to-end latency (handler start
- payload ts) with an idle worker at concurrency 10 while a separate producer process
enqueues open-loop at 500 jobs/s.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _valkey import flush, valkey_server
from core import Broker, bullmq, payload
from jobwire import Client, Job, Worker, job_spec
from redis.asyncio import Redis

QUEUE = "bench"
# The broker runs with --key-prefix bench. Retention trims the completed set (10,000 by
# default), so "all done" is: every handler ran and nothing is ready or active.
PENDING = (f"bench:{{{QUEUE}}}:ready", f"bench:{{{QUEUE}}}:active")


async def enqueue_figures(target: str, n: int) -> dict[str, float]:
    out = {}
    async with Client(target) as client:
        start = time.perf_counter()
        for i in range(n):
            await client.enqueue(QUEUE, payload(i), content_type="application/json")
        out["enqueue 1-by-1"] = n / (time.perf_counter() - start)

        async def lane(k: int) -> None:
            for i in range(k, n, 100):
                await client.enqueue(QUEUE, payload(i), content_type="application/json")

        start = time.perf_counter()
        await asyncio.gather(*(lane(k) for k in range(100)))
        out["enqueue 100 concurrent"] = n / (time.perf_counter() - start)

        start = time.perf_counter()
        await prefill(client, n)
        out["enqueue batch 1000"] = n / (time.perf_counter() - start)
    return out


async def prefill(client: Client, n: int) -> None:
    for start in range(0, n, 1000):
        specs = [
            job_spec(payload(i), content_type="application/json")
            for i in range(start, min(n, start + 1000))
        ]
        await client.enqueue_batch(QUEUE, specs)


async def process(target: str, redis: Redis, n: int, concurrency: int) -> float:
    async with Client(target) as client:
        await prefill(client, n)
    worker = Worker(target, concurrency=concurrency, lease_wait=1)
    handled = 0

    @worker.handler(QUEUE)
    async def noop(job: Job) -> None:
        nonlocal handled
        handled += 1

    async def pending() -> int:
        return sum([await redis.zcard(key) for key in PENDING])

    start = time.perf_counter()
    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    # Polling Redis is the measurement: the N-th completion acknowledged by the broker.
    while handled < n or await pending():  # noqa: ASYNC110
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    worker.stop()
    await task
    return n / elapsed


async def latency(target: str, n: int, rate: int) -> tuple[float, float]:
    """p50 and p99 in ms of handler start - payload ts, over all n jobs."""
    samples: list[float] = []
    done = asyncio.Event()
    worker = Worker(target, concurrency=10, lease_wait=1)

    @worker.handler(QUEUE)
    async def measure(job: Job) -> None:
        samples.append(time.time() - float(json.loads(job.payload)["ts"]))
        if len(samples) >= n:
            done.set()

    task = asyncio.create_task(worker.run(install_signal_handlers=False))
    await asyncio.sleep(0.5)  # idle and long-polling before the first job
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).parent / "_producer.py"),
        target,
        QUEUE,
        str(n),
        str(rate),
    )
    await producer.wait()
    await asyncio.wait_for(done.wait(), 60)
    worker.stop()
    await task
    ms = sorted(s * 1000 for s in samples)
    return ms[len(ms) // 2], ms[int(len(ms) * 0.99)]


async def measure_jobwire(n: int, repeat: int, only: set[str]) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        runs.setdefault(name, []).append(value)

    with valkey_server() as (host, port):
        broker = Broker(f"redis://{host}:{port}/0")
        target = f"127.0.0.1:{broker.port}"
        redis = Redis(host=host, port=port)
        try:
            for _ in range(repeat):
                if "enqueue" in only:
                    flush(host, port)
                    for name, value in (await enqueue_figures(target, n)).items():
                        add(name, value)
                if "process" in only:
                    for c in (1, 10, 50):
                        flush(host, port)
                        add(f"process c={c}", await process(target, redis, n, c))
                if "latency" in only:
                    flush(host, port)
                    p50, p99 = await latency(target, n, 500)
                    add("latency p50 ms @500/s", p50)
                    add("latency p99 ms @500/s", p99)
        finally:
            await redis.aclose()
            broker.stop()
    return runs


def measure_bullmq(n: int, repeat: int, only: set[str]) -> dict[str, list[float]]:
    with valkey_server() as (_, port):
        return bullmq(port, n, repeat, ",".join(sorted(only)))


def table(ours: dict[str, list[float]], theirs: dict[str, list[float]], n: int, repeat: int) -> str:
    def cell(values: list[float] | None, fmt: Callable[[float], str]) -> str:
        if not values:
            return "-"
        return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"

    lines = [
        f"standard workload, {n} jobs, median (min-max) of {repeat}",
        f"{'figure':26} {'Jobwire (Python SDK, gRPC)':>34} {'BullMQ (Node)':>34}",
    ]
    for name in ours:
        fmt: Callable[[float], str] = (
            (lambda v: f"{v:.2f}") if "latency" in name else (lambda v: f"{v:,.0f}")
        )
        lines.append(f"{name:26} {cell(ours[name], fmt):>34} {cell(theirs.get(name), fmt):>34}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="enqueue,process,latency")
    parser.add_argument("--no-bullmq", action="store_true")
    parser.add_argument("--json", help="write all runs to this file")
    args = parser.parse_args()
    only = set(args.only.split(","))
    ours = asyncio.run(measure_jobwire(args.jobs, args.repeat, only))
    theirs = {} if args.no_bullmq else measure_bullmq(args.jobs, args.repeat, only)
    print(table(ours, theirs, args.jobs, args.repeat))
    if args.json:
        Path(args.json).write_text(json.dumps({"jobwire": ours, "bullmq": theirs}, indent=2))


if __name__ == "__main__":
    main()
