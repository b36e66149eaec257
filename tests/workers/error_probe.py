"""Drives every ErrorReason through the Python SDK and prints the class it raised, one
JSON line per case, for tests/test_error_classes.py (the same cases and line format as
clients/go/cmd/jobwire-go-errors):

    error_probe.py --target HOST:PORT --dead-target HOST:PORT --queue PREFIX

Every reason the broker can send is triggered for real, the AdminService's QUEUE_NOT_FOUND,
WRONG_STATE and QUEUE_BUSY through jobwire.Admin; the ones it cannot be made to send, and
a few fallbacks, are statuses built here and mapped as a call's error is."""

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from jobwire import (
    Admin,
    Client,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobFinished,
    JobwireError,
    LeaseLost,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from jobwire._errors import DOMAIN, AlreadyExists, error_from_rpc
from jobwire.v1 import broker_service_pb2 as pb

CLASSES: list[tuple[str, type[JobwireError]]] = [  # most specific first
    ("lease_lost", LeaseLost),
    ("job_finished", JobFinished),
    ("failed_precondition", FailedPrecondition),
    ("invalid_argument", InvalidArgument),
    ("not_found", NotFound),
    ("already_exists", AlreadyExists),
    ("resource_exhausted", ResourceExhausted),
    ("unavailable", Unavailable),
    ("unauthenticated", Unauthenticated),
    ("permission_denied", PermissionDenied),
    ("internal", Internal),
]


def describe(case: str, err: BaseException | None) -> dict[str, Any]:
    line: dict[str, Any] = {"case": case, "class": "ok", "is": [], "fields": []}
    if err is None:
        return line
    if not isinstance(err, JobwireError):
        return {**line, "class": f"unmapped: {err!r}"}
    names = [name for name, cls in CLASSES if isinstance(err, cls)]
    delay = None if err.retry_after is None else round(err.retry_after * 1000)
    return {
        "case": case,
        "code": err.code.name,
        "reason": err.reason,
        "class": names[0] if names else "error",
        "is": sorted(names),
        "retry_delay_ms": delay,
        "fields": [v.field for v in err.violations],
    }


class Built(grpc.RpcError):
    """A status as the broker would send it, with its details in the trailers."""

    def __init__(self, code: grpc.StatusCode, reason: str, domain: str, *more: Any) -> None:
        details = [error_details_pb2.ErrorInfo(reason=reason, domain=domain)] if reason else []
        packed = []
        for message in (*details, *more):
            wrapped = any_pb2.Any()
            wrapped.Pack(message)
            packed.append(wrapped)
        status = status_pb2.Status(code=code.value[0], message="built", details=packed)
        self._code, self._trailers = (
            code,
            (("grpc-status-details-bin", status.SerializeToString()),),
        )

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "built by error_probe.py"

    def trailing_metadata(self) -> Any:
        return self._trailers


async def caught(call: Any) -> BaseException | None:
    try:
        await call
    except JobwireError as err:
        return err
    except grpc.RpcError as err:
        return error_from_rpc(err)
    return None


Emit = Callable[[str, BaseException | None], None]


async def admin_errors(client: Client, queue: str, emit: Emit) -> None:
    """The AdminService's own reasons, each from the call that sends it."""
    admin = Admin.from_client(client)
    emit("QUEUE_NOT_FOUND", await caught(admin.get_queue(f"{queue}-never")))
    ready = f"{queue}-ready"
    job = await client.enqueue(ready, b"x")
    # PromoteJobs by ids applies only to scheduled jobs; this one is ready.
    emit("WRONG_STATE", await caught(admin.promote_jobs(ready, [job.job_id])))
    busy = f"{queue}-busy"
    await client.enqueue(busy, b"x")
    leased = await client.stub.Lease(pb.LeaseRequest(queue=busy, wait=Duration(seconds=5)))
    if len(leased.jobs) != 1:
        raise RuntimeError(f"could not lease the job of {busy}")
    emit("QUEUE_BUSY", await caught(admin.delete_queue(busy)))


async def run(target: str, dead: str, queue: str) -> None:
    def emit(case: str, err: BaseException | None) -> None:
        print(json.dumps(describe(case, err)), flush=True)

    async with Client(target) as client:
        stub = client.stub
        emit("INVALID_ARGUMENT", await caught(client.enqueue("bad queue!", b"")))
        emit("PAYLOAD_TOO_LARGE", await caught(client.enqueue(queue, b"x" * ((1 << 20) + 1))))
        emit("JOB_NOT_FOUND", await caught(client.get(f"{queue}:999999")))
        job = await client.enqueue(queue, b"x")
        leased = await stub.Lease(pb.LeaseRequest(queue=queue, wait=Duration(seconds=5)))
        (held,) = leased.jobs
        bad = pb.CompleteRequest(job_id=job.job_id, lease_token="not-the-token")
        emit("LEASE_LOST", await caught(stub.Complete(bad)))
        await stub.Complete(pb.CompleteRequest(job_id=job.job_id, lease_token=held.lease_token))
        emit("JOB_FINISHED", await caught(client.cancel(job.job_id)))
        big = f"{queue}-big"
        await client.enqueue(big, b"a job larger than one byte")
        tiny = pb.LeaseRequest(queue=big, max_response_bytes=1)
        emit("JOB_TOO_LARGE", await caught(stub.Lease(tiny)))
        await admin_errors(client, queue, emit)
    if dead:
        async with Client(dead) as down:
            emit("STORE_UNAVAILABLE", await caught(down.get(f"{queue}:1")))
    second = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=1))
    c = grpc.StatusCode
    for case, err in [
        ("SHUTTING_DOWN", Built(c.UNAVAILABLE, "SHUTTING_DOWN", DOMAIN, second)),
        ("INTERNAL", Built(c.INTERNAL, "INTERNAL", DOMAIN)),
        ("UNAUTHENTICATED", Built(c.UNAUTHENTICATED, "UNAUTHENTICATED", DOMAIN)),
        ("PERMISSION_DENIED", Built(c.PERMISSION_DENIED, "PERMISSION_DENIED", DOMAIN)),
        ("NO_DETAILS", Built(c.FAILED_PRECONDITION, "", "")),
        ("UNKNOWN_REASON", Built(c.NOT_FOUND, "SOMETHING_NEW", DOMAIN)),
        ("FOREIGN_DOMAIN", Built(c.FAILED_PRECONDITION, "LEASE_LOST", "example.com")),
        ("REASON_OVER_CODE", Built(c.UNKNOWN, "JOB_FINISHED", DOMAIN)),
        ("ABORTED", Built(c.ABORTED, "", "")),
        # TODO(broker sends them): trigger these three with real calls instead, as above.
        ("CROSS_SLOT", Built(c.FAILED_PRECONDITION, "CROSS_SLOT", DOMAIN)),
        ("SCHEDULE_NOT_FOUND", Built(c.NOT_FOUND, "SCHEDULE_NOT_FOUND", DOMAIN)),
        ("SCHEDULE_EXISTS", Built(c.ALREADY_EXISTS, "SCHEDULE_EXISTS", DOMAIN)),
    ]:
        emit(case, error_from_rpc(err))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--dead-target", default="")
    parser.add_argument("--queue", default="python-errors")
    args = parser.parse_args()
    asyncio.run(run(args.target, args.dead_target, args.queue))


if __name__ == "__main__":
    main()
