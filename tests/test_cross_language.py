"""Issue 5's matrix: jobs enqueued from Go, TypeScript, Java, Rust and Python are processed
by a Python worker, and jobs enqueued from Python by the Go and TypeScript workers.
Payload bytes, headers and results come through unchanged; trace context set by each
producer reaches the Python worker's CONSUMER span as the same trace."""

import asyncio
import base64
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jobwire import Client, JobState
from jobwire_broker.server import BrokerApp

pytestmark = pytest.mark.cross_language

ROOT = Path(__file__).resolve().parent.parent
WORKERS = ROOT / "tests/workers"
PAYLOADS = [
    "grüße ✓ 汉字".encode() + bytes([0, 255, 10]),
    b"",
]
HEADERS = {"lang": "?", "greeting": "grüße ✓"}


@pytest.fixture(scope="session")
def go_cli(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("go") is None:
        pytest.skip("no Go toolchain (make setup-go)")
    binary = tmp_path_factory.mktemp("go") / "jobwire-go"
    subprocess.run(
        ["go", "build", "-o", str(binary), "./cmd/jobwire-go"], cwd=ROOT / "clients/go", check=True
    )
    return str(binary)


@pytest.fixture(scope="session")
def node_cli() -> str:
    cli = ROOT / "clients/node/bin/jobwire-node.js"
    if shutil.which("node") is None or not (ROOT / "clients/node/dist").is_dir():
        pytest.skip("TypeScript client not built (make setup-node)")
    return str(cli)


@pytest.fixture(scope="session")
def java_cli() -> list[str]:
    folder = ROOT / "clients/java"
    if shutil.which("mvn") is None:
        pytest.skip("no Maven (make setup-java)")
    # Compiles and writes target/classpath.txt (see pom.xml); offline after setup-java.
    subprocess.run(["mvn", "-B", "-q", "-o", "compile"], cwd=folder, check=True)
    classpath = f"{folder}/target/classes:{(folder / 'target/classpath.txt').read_text().strip()}"
    return ["java", "-cp", classpath, "dev.jobwire.cli.Enqueue"]


@pytest.fixture(scope="session")
def rust_cli() -> list[str]:
    folder = ROOT / "clients/rust"
    if shutil.which("cargo") is None:
        pytest.skip("no Rust toolchain (make setup-rust)")
    subprocess.run(
        ["cargo", "build", "-q", "--locked", "--example", "enqueue"], cwd=folder, check=True
    )
    return [str(folder / "target/debug/examples/enqueue")]


@pytest.fixture
def target(broker: BrokerApp) -> str:
    return f"127.0.0.1:{broker.port}"


@pytest.fixture
async def client(target: str) -> AsyncIterator[Client]:
    async with Client(target) as c:
        yield c


def traceparent(n: int) -> str:
    return f"00-{n:032x}-{n:016x}-01"


def enqueue_args(queue: str, target: str, payload: Path, tp: str, lang: str) -> list[str]:
    return [
        "--target",
        target,
        "--queue",
        queue,
        "--payload-file",
        str(payload),
        "--header",
        f"lang={lang}",
        "--header",
        f"greeting={HEADERS['greeting']}",
        "--traceparent",
        tp,
    ]


async def run(*cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, f"{cmd[0]} failed: {err.decode()}"
    return out.decode()


async def python_worker(target: str, queue: str, n: int) -> list[dict[str, str]]:
    out = await run(sys.executable, str(WORKERS / "matrix_worker.py"), target, queue, str(n))
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def enqueue_command(cli: list[str], lang: str) -> list[str]:
    """The Java and Rust programs only enqueue, so they take no subcommand."""
    return cli if lang in ("java", "rust") else [*cli, "enqueue"]


async def test_jobs_from_every_language_reach_a_python_worker_unchanged(
    target: str,
    client: Client,
    go_cli: str,
    node_cli: str,
    java_cli: list[str],
    rust_cli: list[str],
    tmp_path: Path,
) -> None:
    queue = "from-everyone"
    expected = {}
    langs = {"go": [go_cli], "node": ["node", node_cli], "java": java_cli, "rust": rust_cli}
    for n, (lang, cli) in enumerate(langs.items(), start=1):
        for i, payload in enumerate(PAYLOADS):
            file = tmp_path / f"{lang}-{i}.bin"
            file.write_bytes(payload)
            tp = traceparent(n * 100 + i + 1)
            args = enqueue_args(queue, target, file, tp, lang)
            out = await run(*enqueue_command(cli, lang), *args)
            expected[out.strip().splitlines()[-1]] = (lang, payload, tp)
    with_python = await client.enqueue(queue, PAYLOADS[0], headers={**HEADERS, "lang": "python"})
    expected[with_python.job_id] = ("python", PAYLOADS[0], "")

    seen = {line["id"]: line for line in await python_worker(target, queue, len(expected))}
    assert set(seen) == set(expected)
    for job_id, (lang, payload, tp) in expected.items():
        line = seen[job_id]
        assert base64.b64decode(line["payload"]) == payload, lang
        assert line["headers"] == {**HEADERS, "lang": lang}, lang
        info = await client.get(job_id)
        assert info.state is JobState.COMPLETED and info.result == payload[::-1], lang
        if tp:  # the producer's trace reached the worker's CONSUMER span
            assert line["span_kind"] == "CONSUMER"
            assert line["span_trace_id"] == tp.split("-")[1], lang
            assert line["traceparent"].split("-")[1] == tp.split("-")[1], lang
            assert line["span_parent_id"] == line["traceparent"].split("-")[2], lang


@pytest.mark.parametrize("lang", ["go", "node"])
async def test_jobs_from_python_are_processed_by_go_and_node_workers(
    target: str, client: Client, go_cli: str, node_cli: str, lang: str
) -> None:
    queue = f"to-{lang}"
    jobs = {}
    for payload in PAYLOADS:
        result = await client.enqueue(queue, payload, headers={**HEADERS, "lang": "python"})
        jobs[result.job_id] = payload
    cmd = {"go": [go_cli, "work", "--result-from-payload"], "node": ["node", node_cli, "work"]}[
        lang
    ]
    out = await run(*cmd, "--target", target, "--queue", queue, "--count", str(len(jobs)))
    lines = {(d := json.loads(line))["id"]: d for line in out.splitlines() if line.startswith("{")}
    assert set(lines) == set(jobs)
    for job_id, payload in jobs.items():
        assert base64.b64decode(lines[job_id]["payload"] or "") == payload  # Go: null if empty
        assert lines[job_id]["headers"] == {**HEADERS, "lang": "python"}
        info = await client.get(job_id)
        assert info.state is JobState.COMPLETED
        # Go completes with the payload reversed, the TypeScript worker with it unchanged.
        assert info.result == (payload[::-1] if lang == "go" else payload)
