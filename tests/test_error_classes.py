"""Issue 9's matrix: every client raises the same error class for each ErrorReason.

Each language's probe (Python `tests/workers/error_probe.py`, Go `cmd/jobwire-go-errors`,
`jobwire-node errors`, Java `dev.jobwire.cli.ErrorProbe`, Rust `examples/errors.rs`)
triggers every reason the broker sends against a real broker, and STORE_UNAVAILABLE
against a second broker whose Redis is down. The AdminService's reasons come from real
AdminService calls: QUEUE_NOT_FOUND from GetQueue of a queue that never existed,
WRONG_STATE from PromoteJobs naming a ready job, QUEUE_BUSY from DeleteQueue (no force)
of a queue whose job is leased; through the client's admin class (Python `Admin`, Go
`Admin`, TypeScript `JobwireAdmin`), or in Java and Rust, which have none, through the
generated AdminService stub with the status mapped by the client's own mapping
(`Errors.map`, `Error::from`). The reasons the broker cannot be made to
send (SHUTTING_DOWN, INTERNAL, UNAUTHENTICATED, PERMISSION_DENIED) and the fallbacks (no
details, an unknown reason, another domain's reason) are statuses every probe builds and
maps as a call's error. So, for now, are the reasons of the coordination features
(CROSS_SLOT, SCHEDULE_NOT_FOUND, SCHEDULE_EXISTS), which this broker does not send yet;
each probe marks where their real calls go (an EnqueueFlow across two queues on Redis
Cluster, GetSchedule of a schedule that never existed, CreateSchedule twice) once it
does. Each prints one JSON line per case; every language must print
EXPECTED, the table of protos/jobwire/v1/README.md. A new client joins with one entry in
PROBES.
"""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jobwire.v1 import error_reason_pb2
from jobwire_broker.embedded import free_port
from jobwire_broker.server import BrokerApp
from support import BrokerProcess
from test_cross_language import ROOT, run

pytestmark = pytest.mark.cross_language

FP = ["failed_precondition"]
# case -> what every client reports: gRPC code, reason, most specific class, every class
# it belongs to, RetryInfo delay, field violations.
EXPECTED: dict[str, dict[str, Any]] = {
    "INVALID_ARGUMENT": {
        "code": "INVALID_ARGUMENT",
        "reason": "INVALID_ARGUMENT",
        "class": "invalid_argument",
        "fields": ["queue"],
    },
    "PAYLOAD_TOO_LARGE": {
        "code": "INVALID_ARGUMENT",
        "reason": "PAYLOAD_TOO_LARGE",
        "class": "invalid_argument",
        "fields": ["job.payload"],
    },
    "JOB_NOT_FOUND": {"code": "NOT_FOUND", "reason": "JOB_NOT_FOUND", "class": "not_found"},
    "LEASE_LOST": {
        "code": "FAILED_PRECONDITION",
        "reason": "LEASE_LOST",
        "class": "lease_lost",
        "is": [*FP, "lease_lost"],
    },
    "JOB_FINISHED": {
        "code": "FAILED_PRECONDITION",
        "reason": "JOB_FINISHED",
        "class": "job_finished",
        "is": [*FP, "job_finished"],
    },
    "JOB_TOO_LARGE": {
        "code": "RESOURCE_EXHAUSTED",
        "reason": "JOB_TOO_LARGE",
        "class": "resource_exhausted",
    },
    "STORE_UNAVAILABLE": {
        "code": "UNAVAILABLE",
        "reason": "STORE_UNAVAILABLE",
        "class": "unavailable",
        "retry_delay_ms": 1000,
    },
    "SHUTTING_DOWN": {
        "code": "UNAVAILABLE",
        "reason": "SHUTTING_DOWN",
        "class": "unavailable",
        "retry_delay_ms": 1000,
    },
    "INTERNAL": {"code": "INTERNAL", "reason": "INTERNAL", "class": "internal"},
    "UNAUTHENTICATED": {
        "code": "UNAUTHENTICATED",
        "reason": "UNAUTHENTICATED",
        "class": "unauthenticated",
    },
    "PERMISSION_DENIED": {
        "code": "PERMISSION_DENIED",
        "reason": "PERMISSION_DENIED",
        "class": "permission_denied",
    },
    "QUEUE_NOT_FOUND": {"code": "NOT_FOUND", "reason": "QUEUE_NOT_FOUND", "class": "not_found"},
    # The generic class only: not a lease_lost or job_finished.
    "WRONG_STATE": {
        "code": "FAILED_PRECONDITION",
        "reason": "WRONG_STATE",
        "class": "failed_precondition",
    },
    "QUEUE_BUSY": {
        "code": "FAILED_PRECONDITION",
        "reason": "QUEUE_BUSY",
        "class": "failed_precondition",
    },
    # Built statuses until the broker sends them (see the module docstring).
    "CROSS_SLOT": {
        "code": "FAILED_PRECONDITION",
        "reason": "CROSS_SLOT",
        "class": "failed_precondition",
    },
    "SCHEDULE_NOT_FOUND": {
        "code": "NOT_FOUND",
        "reason": "SCHEDULE_NOT_FOUND",
        "class": "not_found",
    },
    "SCHEDULE_EXISTS": {
        "code": "ALREADY_EXISTS",
        "reason": "SCHEDULE_EXISTS",
        "class": "already_exists",
    },
    # Fallbacks: the class of the code when the reason is missing, unknown or not ours,
    # and the reason over the code when they disagree.
    "NO_DETAILS": {"code": "FAILED_PRECONDITION", "class": "failed_precondition"},
    "UNKNOWN_REASON": {"code": "NOT_FOUND", "class": "not_found"},
    "FOREIGN_DOMAIN": {"code": "FAILED_PRECONDITION", "class": "failed_precondition"},
    "REASON_OVER_CODE": {
        "code": "UNKNOWN",
        "reason": "JOB_FINISHED",
        "class": "job_finished",
        "is": [*FP, "job_finished"],
    },
    "ABORTED": {"code": "ABORTED", "class": "error", "is": []},
}


def expected(case: str) -> dict[str, Any]:
    row = EXPECTED[case]
    return {
        "case": case,
        "code": row["code"],
        "reason": row.get("reason", "ERROR_REASON_UNSPECIFIED"),
        "class": row["class"],
        "is": row.get("is", [row["class"]]),
        "retry_delay_ms": row.get("retry_delay_ms"),
        "fields": row.get("fields", []),
    }


def build_go(tmp: Path) -> list[str]:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain (make setup-go)")
    binary = tmp / "jobwire-go-errors"
    subprocess.run(
        ["go", "build", "-o", str(binary), "./cmd/jobwire-go-errors"],
        cwd=ROOT / "clients/go",
        check=True,
    )
    return [str(binary)]


def build_node(tmp: Path) -> list[str]:
    if shutil.which("node") is None or not (ROOT / "clients/node/dist").is_dir():
        pytest.skip("TypeScript client not built (make setup-node)")
    return ["node", str(ROOT / "clients/node/bin/jobwire-node.js"), "errors"]


def build_java(tmp: Path) -> list[str]:
    folder = ROOT / "clients/java"
    if shutil.which("mvn") is None:
        pytest.skip("no Maven (make setup-java)")
    subprocess.run(["mvn", "-B", "-q", "-o", "compile"], cwd=folder, check=True)
    classpath = f"{folder}/target/classes:{(folder / 'target/classpath.txt').read_text().strip()}"
    return ["java", "-cp", classpath, "dev.jobwire.cli.ErrorProbe"]


def build_rust(tmp: Path) -> list[str]:
    folder = ROOT / "clients/rust"
    if shutil.which("cargo") is None:
        pytest.skip("no Rust toolchain (make setup-rust)")
    subprocess.run(
        ["cargo", "build", "-q", "--locked", "--example", "errors"], cwd=folder, check=True
    )
    return [str(folder / "target/debug/examples/errors")]


# language -> how to build its probe; each takes --target, --dead-target and --queue.
def build_python(tmp: Path) -> list[str]:
    return [sys.executable, str(ROOT / "tests/workers/error_probe.py")]


PROBES: dict[str, Callable[[Path], list[str]]] = {
    "python": build_python,
    "go": build_go,
    "node": build_node,
    "java": build_java,
    "rust": build_rust,
}


@pytest.fixture(scope="module")
def dead_broker() -> Iterator[BrokerProcess]:
    """A broker whose Redis never answers: every call is UNAVAILABLE (STORE_UNAVAILABLE)."""
    broker = BrokerProcess(
        "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--log-level", "ERROR"
    )
    yield broker
    broker.kill()


def test_the_cases_cover_every_reason() -> None:
    reasons = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
    assert reasons <= set(EXPECTED), f"reasons without a case: {reasons - set(EXPECTED)}"


@pytest.mark.parametrize("lang", PROBES)
async def test_every_client_raises_the_same_class_for_each_reason(
    lang: str, broker: BrokerApp, dead_broker: BrokerProcess, tmp_path: Path
) -> None:
    probe = PROBES[lang](tmp_path)
    out = await run(
        *probe,
        *("--target", f"127.0.0.1:{broker.port}"),
        *("--dead-target", dead_broker.target),
        *("--queue", f"errors-{lang}"),
    )
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    got = {line["case"]: line for line in lines}
    assert sorted(got) == sorted(EXPECTED), f"{lang} printed the cases {sorted(got)}"
    wrong = {case: got[case] for case in EXPECTED if got[case] != expected(case)}
    assert not wrong, f"{lang} differs from the table:\n" + "\n".join(
        f"{case}: got {line}, want {expected(case)}" for case, line in wrong.items()
    )
