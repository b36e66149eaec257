"""A bare worker on the raw generated stubs (no SDK), for crash tests that SIGKILL it.

It leases with long-poll, "works" for a random few milliseconds per job, completes it,
and fails over to the next broker address when one stops answering. Everything it does
is appended to its log file, one record per line, each line one write(2) on an
O_APPEND descriptor, so a SIGKILL never leaves half a record:

    L  <job_id> <attempt>   leased
    C  <job_id> <attempt>   about to call Complete (its outcome may never be logged)
    OK <job_id> <attempt>   Complete accepted: this attempt finished the job
    R  <job_id> <attempt>   Complete refused: the lease was stale
    F  <target>             failed over to this broker address

Runs until SIGTERM (finishing the jobs in hand) or until it has been idle for a while.
"""

import argparse
import contextlib
import ctypes
import os
import random
import signal
import sys
import time
from types import FrameType
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2

PR_SET_PDEATHSIG = 1
# Codes after which the call may or may not have reached the broker: try the next one.
FAILOVER_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
CALL_TIMEOUT_S = 5.0
GIVE_UP_S = 60.0  # no broker answered for this long: exit rather than linger


class Log:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(self, *fields: object) -> None:
        os.write(self.fd, (" ".join(map(str, fields)) + "\n").encode())


class Brokers:
    """A channel to one broker of a list; `call` moves to the next on failure."""

    def __init__(self, targets: list[str], log: Log) -> None:
        self.targets = targets
        self.log = log
        self.index = 0
        self.failovers = 0
        self.channel = grpc.insecure_channel(targets[0])
        self.stub = rpc.BrokerServiceStub(self.channel)

    def failover(self) -> None:
        self.channel.close()
        self.failovers += 1
        self.index = (self.index + 1) % len(self.targets)
        self.channel = grpc.insecure_channel(self.targets[self.index])
        self.stub = rpc.BrokerServiceStub(self.channel)
        self.log.record("F", self.targets[self.index])

    def call(self, method: str, request: Any) -> Any:
        give_up = time.monotonic() + GIVE_UP_S
        while True:
            try:
                return getattr(self.stub, method)(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as err:
                code = err.code()  # type: ignore[attr-defined]
                if code not in FAILOVER_CODES or time.monotonic() > give_up:
                    raise
                print(f"{method}: {code} from {self.targets[self.index]}", file=sys.stderr)
                self.failover()
                time.sleep(0.05)

    def close(self) -> None:
        self.channel.close()


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log = Log(args.log)
        self.brokers = Brokers(args.targets.split(","), self.log)
        self.stopping = False

    def run(self) -> None:
        idle_since = time.monotonic()
        while not self.stopping and time.monotonic() - idle_since < self.args.idle_exit:
            request = pb.LeaseRequest(
                queue=self.args.queue,
                max_jobs=self.args.batch,
                wait=Duration(seconds=1),
                worker_id=f"raw-worker-{os.getpid()}",
            )
            response = self.brokers.call("Lease", request)
            if not response.jobs:
                continue
            idle_since = time.monotonic()
            for leased in response.jobs:
                self.log.record("L", leased.job.id, leased.attempt)
            for leased in response.jobs:
                time.sleep(random.uniform(self.args.work_min_ms, self.args.work_max_ms) / 1000)
                self.complete(leased)

    def complete(self, leased: pb.LeasedJob) -> None:
        job_id, attempt = leased.job.id, leased.attempt
        self.log.record("C", job_id, attempt)
        request = pb.CompleteRequest(job_id=job_id, lease_token=leased.lease_token)
        failovers_before = self.brokers.failovers
        try:
            self.brokers.call("Complete", request)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.FAILED_PRECONDITION:  # type: ignore[attr-defined]
                raise
            # After a lost reply our first try may have been applied; the attempt
            # number says whether the job was finished by this very lease.
            if self.brokers.failovers > failovers_before and self.finished_by(job_id, attempt):
                self.log.record("OK", job_id, attempt)
            else:
                self.log.record("R", job_id, attempt)
            return
        self.log.record("OK", job_id, attempt)

    def finished_by(self, job_id: str, attempt: int) -> bool:
        job = self.brokers.call("GetJob", pb.GetJobRequest(job_id=job_id)).job
        return bool(job.state == job_pb2.JOB_STATE_COMPLETED and job.attempt == attempt)

    def stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--targets", required=True, help="comma-separated broker addresses")
    p.add_argument("--queue", required=True)
    p.add_argument("--log", required=True, help="file to append records to")
    p.add_argument("--work-min-ms", type=float, default=5)
    p.add_argument("--work-max-ms", type=float, default=20)
    p.add_argument("--batch", type=int, default=4, help="max_jobs of each Lease")
    p.add_argument("--idle-exit", type=float, default=30, help="seconds without work")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    # A worker outliving a crashed test would hold leases nobody expects.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    worker = Worker(parse(argv))
    signal.signal(signal.SIGTERM, worker.stop)
    try:
        worker.run()
    finally:
        worker.brokers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
