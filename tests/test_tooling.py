"""The broker with the tools a new user reaches for: grpcurl, ghz and grpc-health-probe
(real binaries from `make tools`) and raw reflection and health clients."""

import asyncio
import base64
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2 as r
from helpers import lease
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire_broker.api.reflection import enable_reflection
from jobwire_broker.server import BrokerApp
from support import ROOT

Tool = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTION_V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
# grpcurl, ghz and grpc-health-probe are Go programs (`make tools`).
needs_tools = pytest.mark.cross_language


def tool_path(name: str) -> str:
    found = shutil.which(name, path=f"{ROOT / '.tools/bin'}{os.pathsep}{os.environ['PATH']}")
    if found is None:
        pytest.skip(f"no {name} (make tools)")
    return found


async def run(*args: str) -> subprocess.CompletedProcess[str]:
    # Not subprocess.run: the broker under test answers on this event loop.
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return subprocess.CompletedProcess(args, process.returncode, out.decode(), err.decode())


@pytest.fixture
def grpcurl(broker: BrokerApp) -> Tool:
    """grpcurl against the broker: `await grpcurl("describe", "x", data={...})`."""
    binary = tool_path("grpcurl")

    async def call(*args: str, data: object = None) -> subprocess.CompletedProcess[str]:
        flags = ["-plaintext"] + ([] if data is None else ["-d", json.dumps(data)])
        return await run(binary, *flags, f"127.0.0.1:{broker.port}", *args)

    return call


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@needs_tools
async def test_grpcurl_lists_every_service(grpcurl: Tool) -> None:
    services = ok(await grpcurl("list")).split()
    assert services == sorted(
        [
            "jobwire.v1.AdminService",
            "jobwire.v1.BrokerService",
            "jobwire.v1.ScheduleService",
            "grpc.health.v1.Health",
            REFLECTION_V1,
            REFLECTION_V1ALPHA,
        ]
    )


@needs_tools
@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("jobwire.v1.BrokerService", "rpc Lease ( .jobwire.v1.LeaseRequest )"),
        (
            "jobwire.v1.BrokerService.Lease",
            "rpc Lease ( .jobwire.v1.LeaseRequest ) returns ( .jobwire.v1.LeaseResponse );",
        ),
        ("jobwire.v1.LeaseRequest", "message LeaseRequest {"),
        ("jobwire.v1.JobState", "JOB_STATE_READY = 2;"),
        ("grpc.health.v1.Health.List", "rpc List ( .grpc.health.v1.HealthListRequest )"),
        (REFLECTION_V1, "( stream .grpc.reflection.v1.ServerReflectionRequest )"),
    ],
)
async def test_grpcurl_describes(grpcurl: Tool, symbol: str, expected: str) -> None:
    assert expected in ok(await grpcurl("describe", symbol))


@needs_tools
async def test_grpcurl_speaks_reflection_v1() -> None:
    """grpcurl tries v1 first: against a server with v1 only, it still lists and describes."""
    server = grpc.aio.server()
    enable_reflection(server, ["jobwire.v1.BrokerService"], versions=[REFLECTION_V1])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        grpcurl = [tool_path("grpcurl"), "-plaintext", f"127.0.0.1:{port}"]
        listed = ok(await run(*grpcurl, "list")).split()
        described = ok(await run(*grpcurl, "describe", "jobwire.v1.BrokerService.Lease"))
    finally:
        await server.stop(0)
    assert listed == [REFLECTION_V1, "jobwire.v1.BrokerService"]
    assert "rpc Lease ( .jobwire.v1.LeaseRequest )" in described


@needs_tools
async def test_grpcurl_enqueue_then_lease(grpcurl: Tool) -> None:
    payload = base64.b64encode(b'{"to": "a@b.c"}').decode()
    job = {"payload": payload, "contentType": "application/json"}
    enqueued = json.loads(
        ok(await grpcurl("jobwire.v1.BrokerService/Enqueue", data={"queue": "emails", "job": job}))
    )
    leased = json.loads(
        ok(await grpcurl("jobwire.v1.BrokerService/Lease", data={"queue": "emails", "maxJobs": 10}))
    )
    [held] = leased["jobs"]
    assert held["job"]["id"] == enqueued["jobId"]
    assert held["job"]["spec"]["payload"] == payload
    assert held["leaseToken"]


@needs_tools
async def test_grpcurl_decodes_error_details(grpcurl: Tool) -> None:
    """What the README shows: grpcurl prints ErrorInfo and BadRequest as JSON."""
    done = await grpcurl("jobwire.v1.BrokerService/Enqueue", data={"queue": "no spaces", "job": {}})
    assert done.returncode != 0
    assert "Code: InvalidArgument" in done.stderr
    assert '"@type": "type.googleapis.com/google.rpc.ErrorInfo"' in done.stderr
    assert '"@type": "type.googleapis.com/google.rpc.BadRequest"' in done.stderr
    assert '"field": "queue"' in done.stderr


@needs_tools
async def test_ghz_load_through_reflection_only(
    broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    done = await run(
        tool_path("ghz"),
        "--insecure",
        "--call=jobwire.v1.BrokerService.Enqueue",
        "--data=" + json.dumps({"queue": "load", "job": {"payload": "e30="}}),
        "-n",
        "200",
        "-c",
        "4",
        "--format=json",
        f"127.0.0.1:{broker.port}",
    )
    report = json.loads(ok(done))
    assert report["count"] == 200
    assert report["statusCodeDistribution"] == {"OK": 200}, report.get("errorDistribution")
    assert len(await lease(stub, "load", n=1000)) == 200


@needs_tools
async def test_grpc_health_probe(broker: BrokerApp) -> None:
    probe = tool_path("grpc-health-probe")
    for service in ("", "jobwire.v1.BrokerService"):
        done = await run(probe, f"-addr=127.0.0.1:{broker.port}", f"-service={service}")
        assert done.returncode == 0 and done.stderr == "status: SERVING\n", done


async def test_health_list_quietly(broker: BrokerApp, caplog: pytest.LogCaptureFixture) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        listed = await health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest())
    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": health_pb2.HealthCheckResponse.SERVING,
        "jobwire.v1.BrokerService": health_pb2.HealthCheckResponse.SERVING,
        "jobwire.v1.ScheduleService": health_pb2.HealthCheckResponse.SERVING,
    }
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR] == []


def _reflect(kind: str, value: object) -> r.ServerReflectionRequest:
    return r.ServerReflectionRequest(**{kind: value})


def _files(response: r.ServerReflectionResponse) -> list[descriptor_pb2.FileDescriptorProto]:
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    return [
        descriptor_pb2.FileDescriptorProto.FromString(file)
        for file in response.file_descriptor_response.file_descriptor_proto
    ]


@pytest.mark.parametrize("service", [REFLECTION_V1, REFLECTION_V1ALPHA])
async def test_reflection_resolves_every_kind_of_symbol(broker: BrokerApp, service: str) -> None:
    # v1 and v1alpha differ only in their package: the same messages serve both on the wire.
    http = annotations_pb2.http  # an extension (of MethodOptions) in the broker's pool
    asked = {
        "services": _reflect("list_services", ""),
        "service": _reflect("file_containing_symbol", "jobwire.v1.BrokerService"),
        "method": _reflect("file_containing_symbol", "jobwire.v1.BrokerService.Lease"),
        "message": _reflect("file_containing_symbol", "jobwire.v1.LeaseRequest"),
        "field": _reflect("file_containing_symbol", "jobwire.v1.LeaseRequest.queue"),
        "enum": _reflect("file_containing_symbol", "jobwire.v1.JobState"),
        "enum value": _reflect("file_containing_symbol", "jobwire.v1.JOB_STATE_READY"),
        "extension": _reflect("file_containing_symbol", http.full_name),
        "by number": _reflect(
            "file_containing_extension",
            r.ExtensionRequest(
                containing_type=http.containing_type.full_name, extension_number=http.number
            ),
        ),
        "numbers": _reflect("all_extension_numbers_of_type", http.containing_type.full_name),
        "file": _reflect("file_by_filename", "jobwire/v1/broker_service.proto"),
        "reflection": _reflect("file_containing_symbol", f"{service}.ServerReflectionInfo"),
        "unknown": _reflect("file_containing_symbol", "jobwire.v1.Nope"),
        "unknown method": _reflect("file_containing_symbol", "jobwire.v1.BrokerService.Nope"),
        "unknown file": _reflect("file_by_filename", "nope.proto"),
    }
    async with grpc.aio.insecure_channel(f"127.0.0.1:{broker.port}") as channel:
        info = channel.stream_stream(
            f"/{service}/ServerReflectionInfo",
            request_serializer=r.ServerReflectionRequest.SerializeToString,
            response_deserializer=r.ServerReflectionResponse.FromString,
        )
        answers = [answer async for answer in info(iter(asked.values()))]
    got = dict(zip(asked, answers, strict=True))
    for name, request in asked.items():
        assert got[name].original_request == request, name

    listed = [s.name for s in got["services"].list_services_response.service]
    assert {"jobwire.v1.BrokerService", "grpc.health.v1.Health", service} <= set(listed)
    for name in ("service", "method", "message", "field", "file"):
        first, *dependencies = _files(got[name])
        assert first.name == "jobwire/v1/broker_service.proto", name
        assert "jobwire/v1/job.proto" in {d.name for d in dependencies}, name
    [broker_service] = _files(got["method"])[0].service
    assert "Lease" in [m.name for m in broker_service.method]
    for name in ("enum", "enum value"):
        assert _files(got[name])[0].name == "jobwire/v1/job.proto", name
    for name in ("extension", "by number"):
        assert _files(got[name])[0].name == "google/api/annotations.proto", name
    assert http.number in got["numbers"].all_extension_numbers_response.extension_number
    reflection_file = _files(got["reflection"])[0]
    assert reflection_file.package == service.rpartition(".")[0]
    assert [m.name for m in reflection_file.message_type] == [
        m.name for m in r.DESCRIPTOR.message_types_by_name.values()
    ]
    for name in ("unknown", "unknown method", "unknown file"):
        assert got[name].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], name
