"""Shows what adding a JobSpec field costs: in a scratch copy of the repository it adds a
throwaway field that the broker stores and returns (`JobSpec.note`), regenerates the
Python stubs, checks end to end that a real broker keeps it, and lists the files that
had to change. Exits 1 if the round trip fails or more than MAX_BROKER_FILES broker
files changed.
Usage: add_field.py [--root DIR] [--keep]   (DIR defaults to the repository root)
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_BROKER_FILES = 4
BROKER = "broker/jobwire_broker"

# (file, anchor, text inserted after the anchor): the whole change, by hand.
EDITS = [
    (
        "protos/jobwire/v1/job.proto",
        "  TraceContext trace_context = 13;\n",
        "  // A throwaway note, stored and returned as given. At most 256 bytes.\n"
        "  string note = 99;\n",
    ),
    (
        f"{BROKER}/domain/model.py",
        "    idempotency_window_ms: int = field(default=86_400_000, metadata=ENQUEUE_ONLY)\n"
        "    trace: TraceContext = TraceContext()\n",
        '    note: str = ""\n',
    ),
    (
        f"{BROKER}/api/requests.py",
        '            trace=self.trace(f"{field}.trace_context", spec.trace_context),\n',
        "            note=spec.note,\n",
    ),
    (
        f"{BROKER}/api/requests.py",
        "        lim, dft = self.limits, self.defaults\n",
        '        self.size(f"{field}.note", spec.note, lim.max_key_bytes)\n',
    ),
    (
        f"{BROKER}/api/responses.py",
        "        idempotency_key=job.idempotency_key,\n",
        "        note=job.note,\n",
    ),
]
# The JobRecord side of the model: the same field, among the stored options.
RECORD_ANCHOR = (
    '    idempotency_key: str = ""\n    trace: TraceContext = TraceContext()\n    attempt'
)
RECORD_TEXT = (
    '    idempotency_key: str = ""\n    trace: TraceContext = TraceContext()\n'
    '    note: str = ""\n    attempt'
)

ROUND_TRIP = r"""
import asyncio, sys
sys.path[:0] = [sys.argv[1] + "/tests"]
import grpc
from jobwire.v1 import broker_service_pb2 as pb, broker_service_pb2_grpc as rpc, job_pb2
from support import RedisServer, broker_settings, running_broker

async def main() -> None:
    server = RedisServer().start()
    try:
        async with running_broker(broker_settings(server.url, "addfield")) as app:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                stub = rpc.BrokerServiceStub(channel)
                spec = job_pb2.JobSpec(payload=b"x", note="hello")
                job_id = (await stub.Enqueue(pb.EnqueueRequest(queue="q", job=spec))).job_id
                got = (await stub.GetJob(pb.GetJobRequest(job_id=job_id))).job.spec.note
                leased = (await stub.Lease(pb.LeaseRequest(queue="q"))).jobs[0].job.spec.note
                assert (got, leased) == ("hello", "hello"), (got, leased)
    finally:
        server.stop()

asyncio.run(main())
print("round trip: note stored, returned by GetJob and Lease")
"""

PYTHON_TEMPLATE = """version: v2
inputs:
  - directory: protos
plugins:
  - protoc_builtin: python
    protoc_path: tools/protoc/protoc-grpcio
    out: clients/python/src
  - local: protoc-gen-mypy
    out: clients/python/src
  - local: tools/protoc/protoc-gen-grpc_python
    out: clients/python/src
  - local: protoc-gen-mypy_grpc
    out: clients/python/src
"""


def run(cmd: list[str], cwd: Path, **kwargs: object) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    return str(done.stdout)


def copy_tree(root: Path, scratch: Path) -> None:
    """The repository's files as they are in the working tree (tracked or not ignored)."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], root)
    for name in filter(None, listed.split("\0")):
        source = root / name
        if source.is_file():
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    run(["git", "init", "-q"], scratch)
    run(["git", "add", "-A"], scratch)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base"], scratch)


def apply_edits(scratch: Path) -> None:
    for path, anchor, text in EDITS:
        file = scratch / path
        source = file.read_text()
        if anchor not in source:
            sys.exit(f"anchor not found in {path}: {anchor!r}")
        file.write_text(source.replace(anchor, anchor + text, 1))
    model = scratch / f"{BROKER}/domain/model.py"
    source = model.read_text()
    if RECORD_ANCHOR not in source:
        sys.exit("JobRecord anchor not found in domain/model.py")
    model.write_text(source.replace(RECORD_ANCHOR, RECORD_TEXT, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    args = parser.parse_args()
    root: Path = args.root.resolve()
    scratch = Path(tempfile.mkdtemp(prefix="jobwire-add-field-"))
    try:
        copy_tree(root, scratch)
        apply_edits(scratch)
        changed_by_hand = run(["git", "diff", "--name-only"], scratch).split()
        # buf and the protoc plugins live beside this Python (the project's .venv).
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        run(
            ["buf", "generate", "--template", PYTHON_TEMPLATE],
            scratch,
            env={**os.environ, "PATH": path},
        )
        env = {**os.environ, "PYTHONPATH": f"{scratch}/broker:{scratch}/clients/python/src"}
        print(run([sys.executable, "-c", ROUND_TRIP, str(scratch)], scratch, env=env).strip())
        generated = sorted(
            set(run(["git", "diff", "--name-only"], scratch).split()) - set(changed_by_hand)
        )
        broker = [f for f in changed_by_hand if f.startswith("broker/")]
        print("changed by hand:", *changed_by_hand, sep="\n  ")
        print("generated:", *generated, sep="\n  ")
        print(f"broker files: {len(broker)} (at most {MAX_BROKER_FILES})")
        return 0 if len(broker) <= MAX_BROKER_FILES else 1
    finally:
        if args.keep:
            print(f"scratch copy kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
