"""The Python SDK's errors come from the generated ErrorReason, and its retries from the
one service config shipped with the protos (protos/jobwire/v1/service_config.json)."""

import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from jobwire import ChannelOptions, Client, LeaseLost, NotFound, Unavailable
from jobwire._errors import (
    BY_REASON,
    AlreadyExists,
    FailedPrecondition,
    JobwireError,
    error_class,
    item_error,
)
from jobwire._service_config import document
from jobwire.v1 import broker_service_pb2 as pb
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import error_reason_pb2, job_pb2

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "protos/jobwire/v1/service_config.json"


def test_every_reason_of_the_proto_has_a_class() -> None:
    for name, value in error_reason_pb2.ErrorReason.items():
        if name == "ERROR_REASON_UNSPECIFIED":
            continue
        assert value in BY_REASON, f"ErrorReason {name} has no class"
        # The reason wins over a code that says otherwise.
        assert error_class(grpc.StatusCode.UNKNOWN, name) is BY_REASON[value]


def test_the_admin_reasons_get_the_generic_classes() -> None:
    # WRONG_STATE and QUEUE_BUSY are plain failed preconditions: a caller that drops a
    # job on LeaseLost, or ignores JobFinished, must not do so for them.
    assert error_class(grpc.StatusCode.NOT_FOUND, "QUEUE_NOT_FOUND") is NotFound
    for name in ("WRONG_STATE", "QUEUE_BUSY"):
        assert error_class(grpc.StatusCode.FAILED_PRECONDITION, name) is FailedPrecondition
    busy = item_error(grpc.StatusCode.FAILED_PRECONDITION.value[0], "QUEUE_BUSY", "active")
    assert type(busy) is FailedPrecondition and busy.reason == "QUEUE_BUSY"


def test_the_coordination_reasons_get_their_classes() -> None:
    cross = error_class(grpc.StatusCode.FAILED_PRECONDITION, "CROSS_SLOT")
    assert cross is FailedPrecondition
    assert error_class(grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND") is NotFound
    assert error_class(grpc.StatusCode.ALREADY_EXISTS, "SCHEDULE_EXISTS") is AlreadyExists
    assert error_class(grpc.StatusCode.ALREADY_EXISTS, "") is AlreadyExists
    taken = item_error(grpc.StatusCode.ALREADY_EXISTS.value[0], "SCHEDULE_EXISTS", "taken")
    assert type(taken) is AlreadyExists and taken.reason == "SCHEDULE_EXISTS"


def test_without_a_known_reason_the_code_decides() -> None:
    assert error_class(grpc.StatusCode.NOT_FOUND, "SOMETHING_NEW") is NotFound
    assert error_class(grpc.StatusCode.FAILED_PRECONDITION, "") is FailedPrecondition
    assert error_class(grpc.StatusCode.ABORTED, "") is JobwireError
    lost = item_error(grpc.StatusCode.FAILED_PRECONDITION.value[0], "LEASE_LOST", "gone")
    assert isinstance(lost, LeaseLost) and isinstance(lost, FailedPrecondition)


def test_the_package_ships_the_protos_service_config() -> None:
    assert json.loads(document()) == json.loads(CONFIG.read_text())


class Flaky(rpc.BrokerServiceServicer):
    """A server that is UNAVAILABLE for the first `failures` calls of each method."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: dict[str, int] = {}

    async def _count(self, name: str, context: Any) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] <= self.failures:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")

    async def GetJob(self, request: pb.GetJobRequest, context: Any) -> pb.GetJobResponse:
        await self._count("GetJob", context)
        job = job_pb2.Job(id=request.job_id, queue="q", state=job_pb2.JOB_STATE_READY)
        return pb.GetJobResponse(job=job)

    async def Complete(self, request: pb.CompleteRequest, context: Any) -> pb.CompleteResponse:
        await self._count("Complete", context)
        return pb.CompleteResponse()


async def test_retries_follow_the_service_config() -> None:
    """GetJob is retried by gRPC as the config says (up to maxAttempts); Complete, which
    the config does not retry, fails at once."""
    policy = next(
        m["retryPolicy"]
        for m in json.loads(CONFIG.read_text())["methodConfig"]
        if {"service": "jobwire.v1.BrokerService", "method": "GetJob"} in m["name"]
    )
    flaky = Flaky(failures=policy["maxAttempts"] - 1)
    server = grpc.aio.server()
    rpc.add_BrokerServiceServicer_to_server(flaky, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with Client(f"127.0.0.1:{port}") as client:
            job = await client.get("q:1")
            assert job.id == "q:1"
            assert flaky.calls["GetJob"] == policy["maxAttempts"]
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.stub.Complete(pb.CompleteRequest(job_id="q:1", lease_token="t"))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert flaky.calls["Complete"] == 1
        flaky.calls.clear()
        flaky.failures = 99
        async with Client(f"127.0.0.1:{port}") as client:
            with pytest.raises(Unavailable):
                await client.get("q:1")
            assert flaky.calls["GetJob"] == policy["maxAttempts"]  # gRPC's retries, no more
        # Another config changes the retries, so they are the config's and no one else's.
        config = json.loads(CONFIG.read_text())
        for entry in config["methodConfig"]:
            if "retryPolicy" in entry:
                entry["retryPolicy"]["maxAttempts"] = 2
        flaky.calls.clear()
        options = ChannelOptions(service_config=json.dumps(config))
        async with Client(f"127.0.0.1:{port}", options=options) as client:
            with pytest.raises(Unavailable):
                await client.get("q:1")
            assert flaky.calls["GetJob"] == 2
    finally:
        await server.stop(None)
