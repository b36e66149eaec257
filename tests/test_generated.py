"""The stale-stub check: it passes on the repository and fails once a .proto changes
without regenerating (shown on a copy, never on the real tree)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# `buf generate` runs the Go and TypeScript plugins that client setup installs.
pytestmark = pytest.mark.cross_language

ROOT = Path(__file__).resolve().parent.parent
CHECK = [sys.executable, str(ROOT / "tools/check_generated.py")]
# Where `make setup` puts the protoc plugins of the other languages (see Makefile).
PLUGIN_DIRS = [ROOT / ".tools/bin", ROOT / "clients/node/node_modules/.bin"]


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([*map(str, PLUGIN_DIRS), os.environ.get("PATH", "")])
    run = subprocess.run(
        [*CHECK, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PATH": path},
    )
    if "executable file not found" in run.stderr:
        pytest.skip("a protoc plugin is missing: run `make setup` first")
    return run


COPIED = ("buf.yaml", "buf.gen.yaml", "protos", "tools", "clients/python/src/jobwire/v1")


def copy_repo(dest: Path) -> None:
    for name in COPIED:
        src, dst = ROOT / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


def test_checked_in_stubs_are_fresh() -> None:
    run = run_check()
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_proto_change_without_regeneration_fails_the_check(tmp_path: Path) -> None:
    copy_repo(tmp_path)
    proto = tmp_path / "protos/jobwire/v1/job.proto"
    proto.write_text(
        proto.read_text().replace(
            "  google.protobuf.Timestamp lease_expire_time = 15;\n",
            "  google.protobuf.Timestamp lease_expire_time = 15;\n  string added_later = 99;\n",
        )
    )
    run = run_check("--root", str(tmp_path))
    assert run.returncode == 1, run.stderr
    assert "stale: clients/python/src/jobwire/v1/job_pb2.py" in run.stdout
