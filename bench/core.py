"""The broker core on the standard workload (docs/benchmark.md), through real gRPC
with the raw stubs: enqueue (one by one, 100 concurrent, batches of 1000) and
lease + complete (one job per call, and batches of 50). Optionally runs BullMQ's Node
benchmark on the same Valkey in the same session, for a side-by-side table.

    python bench/core.py [--jobs 20000] [--repeat 3] [--bullmq] [--json out.json]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from _valkey import flush, valkey_server
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "bench"
BATCH = 1_000
LEASE_BATCH = 50


def payload(seq: int) -> bytes:
    """The standard 100-byte JSON payload."""
    data = {
        "seq": f"{seq:08d}",
        "op": "noop",
        "tenant": f"t-{seq % 16:04d}",
        "ts": f"{time.time():.6f}",
        "pad": "",
    }
    data["pad"] = "x" * (100 - len(json.dumps(data, separators=(",", ":"))))
    raw = json.dumps(data, separators=(",", ":")).encode()
    assert len(raw) == 100, len(raw)
    return raw


def spec(seq: int) -> job_pb2.JobSpec:
    return job_pb2.JobSpec(payload=payload(seq), content_type="application/json")


class Broker:
    """`jobwire serve` in its own process, as in production; ready once its ready file
    (--ready-file) appears."""

    def __init__(self, redis_url: str, timeout_s: float = 60.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-broker-")
        ready = Path(self._dir.name) / "ready.json"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jobwire_broker",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--redis-url",
                redis_url,
                "--key-prefix",
                "bench",
                "--log-level",
                "WARNING",
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.DEVNULL,  # the line for people; warnings still reach stderr
            cwd=ROOT,
        )
        end = time.monotonic() + timeout_s
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError("broker did not start")
            time.sleep(0.02)
        self.port = int(json.loads(ready.read_text())["grpc_port"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        self._dir.cleanup()


async def enqueue_one_by_one(stub: rpc.BrokerServiceStub, n: int) -> None:
    for i in range(n):
        await stub.Enqueue(pb.EnqueueRequest(queue=QUEUE, job=spec(i)))


async def enqueue_concurrent(stub: rpc.BrokerServiceStub, n: int, width: int = 100) -> None:
    async def lane(start: int) -> None:
        for i in range(start, n, width):
            await stub.Enqueue(pb.EnqueueRequest(queue=QUEUE, job=spec(i)))

    await asyncio.gather(*(lane(k) for k in range(width)))


async def enqueue_batches(stub: rpc.BrokerServiceStub, n: int, size: int = BATCH) -> None:
    for start in range(0, n, size):
        jobs = [spec(i) for i in range(start, min(n, start + size))]
        await stub.EnqueueBatch(pb.EnqueueBatchRequest(queue=QUEUE, jobs=jobs))


async def drain_single(stub: rpc.BrokerServiceStub, n: int, width: int) -> None:
    """`width` loops, each Lease(1) then Complete: one RPC per job per step."""
    done = 0

    async def lane() -> None:
        nonlocal done
        while done < n:
            reply = await stub.Lease(pb.LeaseRequest(queue=QUEUE, max_jobs=1))
            for held in reply.jobs:
                await stub.Complete(
                    pb.CompleteRequest(job_id=held.job.id, lease_token=held.lease_token)
                )
                done += 1

    await asyncio.gather(*(lane() for _ in range(width)))


async def drain_batched(stub: rpc.BrokerServiceStub, n: int, width: int) -> None:
    """`width` loops, each Lease(50) then one SettleBatch completing all 50."""
    done = 0

    async def lane() -> None:
        nonlocal done
        while done < n:
            reply = await stub.Lease(pb.LeaseRequest(queue=QUEUE, max_jobs=LEASE_BATCH))
            if not reply.jobs:
                continue
            await stub.SettleBatch(
                pb.SettleBatchRequest(
                    settlements=[
                        pb.Settlement(
                            complete=pb.CompleteRequest(job_id=h.job.id, lease_token=h.lease_token)
                        )
                        for h in reply.jobs
                    ]
                )
            )
            done += len(reply.jobs)

    await asyncio.gather(*(lane() for _ in range(width)))


Figure = Callable[[rpc.BrokerServiceStub, int], Awaitable[None]]
ENQUEUE: dict[str, Figure] = {
    "enqueue 1-by-1": enqueue_one_by_one,
    "enqueue 100 concurrent": enqueue_concurrent,
    "enqueue batch 1000": enqueue_batches,
}
DRAIN: dict[str, Figure] = {
    "lease+complete single, c=1": lambda s, n: drain_single(s, n, 1),
    "lease+complete single, c=10": lambda s, n: drain_single(s, n, 10),
    "lease+complete batch 50, c=1": lambda s, n: drain_batched(s, n, 1),
    "lease+complete batch 50, c=4": lambda s, n: drain_batched(s, n, 4),
}


async def measure(
    stub: rpc.BrokerServiceStub, host: str, port: int, n: int, repeat: int
) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {name: [] for name in [*ENQUEUE, *DRAIN]}
    for _ in range(repeat):
        for name, figure in ENQUEUE.items():
            flush(host, port)
            start = time.perf_counter()
            await figure(stub, n)
            runs[name].append(n / (time.perf_counter() - start))
        for name, figure in DRAIN.items():
            flush(host, port)
            await enqueue_batches(stub, n)  # pre-fill, not timed
            start = time.perf_counter()
            await figure(stub, n)
            runs[name].append(n / (time.perf_counter() - start))
    return runs


BULLMQ_FIGURES = {
    "enqueue_1by1": "enqueue 1-by-1",
    "enqueue_c100": "enqueue 100 concurrent",
    "enqueue_bulk1000": "enqueue batch 1000",
    "process_c1": "process c=1",
    "process_c10": "process c=10",
    "process_c50": "process c=50",
    "latency_p50_ms": "latency p50 ms @500/s",
    "latency_p99_ms": "latency p99 ms @500/s",
}


def bullmq(port: int, n: int, repeat: int, only: str = "enqueue,process") -> dict[str, list[float]]:
    """Runs bench/bullmq/bench.mjs against the Valkey on `port`; its runs by figure name."""
    folder = ROOT / "bench/bullmq"
    if not (folder / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--silent"], cwd=folder, check=True)
    out = folder / "results.json"
    args = ["--port", str(port), "--jobs", str(n), "--repeat", str(repeat), "--only", only]
    subprocess.run(
        ["node", "bench.mjs", *args, "--json", str(out)],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    figures = json.loads(out.read_text())["figures"]
    out.unlink()
    return {BULLMQ_FIGURES[k]: v["runs"] for k, v in figures.items() if k in BULLMQ_FIGURES}


def table(title: str, runs: dict[str, list[float]]) -> str:
    lines = [f"{title}", f"{'figure':32} {'median':>10} {'min-max':>18}"]
    for name, values in runs.items():
        lines.append(
            f"{name:32} {statistics.median(values):>10,.0f} "
            f"{min(values):>8,.0f}-{max(values):<8,.0f} jobs/s"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    with valkey_server() as (host, port):
        broker = Broker(f"redis://{host}:{port}/0")
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
                stub = rpc.BrokerServiceStub(channel)
                await enqueue_batches(stub, 1_000)  # warm up connections and scripts
                ours = await measure(stub, host, port, args.jobs, args.repeat)
        finally:
            broker.stop()
        print(table(f"Jobwire (gRPC, raw stubs), {args.jobs} jobs x {args.repeat}", ours))
        theirs = {}
        if args.bullmq:
            flush(host, port)
            theirs = bullmq(port, args.jobs, args.repeat)
            print()
            print(table("BullMQ (Node) on the same Valkey", theirs))
    return {"jobwire": ours, "bullmq": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("BENCH_JOBS", 20_000)))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bullmq", action="store_true", help="also run BullMQ's Node worker")
    parser.add_argument("--json", help="write the runs to this file")
    args = parser.parse_args()
    runs = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
