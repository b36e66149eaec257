"""The docs hold up: no file names a path of the machine it was written on, the
benchmark is defined inside the project and linked from the README, links between the
project's pages resolve, and `jobwire serve --help` names the command users run and
explains every option."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from jobwire_broker.cli import parser
from support import ROOT

PAGES = [
    "README.md",
    "bench/bullmq/README.md",
    "clients/python/README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
]


def project_files() -> list[Path]:
    """Tracked files, and new ones git would track (not ignored), that exist."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = {ROOT / name for name in listed.decode().split("\0") if name}
    return sorted(p for p in paths if p.is_file())


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def machine_paths() -> re.Pattern[str]:
    """Absolute paths that only mean something on this machine: the checkout, the folder
    it sits in, the user's home, and /work (where the project is built today). Paths
    inside images (deploy/Dockerfile's /home/jobwire) are fine."""
    roots = {"/work", str(ROOT), str(ROOT.parent), str(Path.home())} - {"/", ""}
    alternatives = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
    return re.compile(rf"(?<![\w.~/-])(?:{alternatives})(?=/|\b)")


def test_no_file_names_a_path_of_this_machine() -> None:
    pattern = machine_paths()
    offenders = []
    for path in project_files():
        if path == Path(__file__).resolve():
            continue  # it spells out what it looks for
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_benchmark_is_defined_in_the_project_and_linked_from_the_readme() -> None:
    spec = (ROOT / "docs/benchmark.md").read_text()
    for part in ("## Workload", "N = 20,000", "exactly 100 bytes", "## Figures"):
        assert part in spec
    readme = (ROOT / "README.md").read_text()
    assert "](docs/benchmark.md)" in readme
    assert "](../../docs/benchmark.md)" in (ROOT / "bench/bullmq/README.md").read_text()
    outside = []
    for path in project_files():
        text = text_of(path) or ""
        if path != Path(__file__).resolve() and re.search(r"\.\./shared\b|BENCHMARK\.md", text):
            outside.append(str(path.relative_to(ROOT)))
    assert outside == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES)
def test_links_between_pages_resolve(page: str) -> None:
    source = ROOT / page
    broken = []
    for target, anchor in re.findall(r"\]\(([^)\s#]*)(?:#([^)\s]*))?\)", source.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        linked = (source.parent / target).resolve() if target else source
        if not linked.exists() or not linked.is_relative_to(ROOT):
            broken.append(target)
        elif anchor and linked.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.MULTILINE)
            if anchor not in {slug(h) for h in headings}:
                broken.append(f"{target}#{anchor}")
    assert broken == []


def serve_parser() -> argparse.ArgumentParser:
    (commands,) = (a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    serve: argparse.ArgumentParser = commands.choices["serve"]
    return serve


def test_every_serve_option_has_help() -> None:
    missing = [
        action.option_strings
        for action in serve_parser()._actions
        if not action.help or action.help == argparse.SUPPRESS
    ]
    assert missing == []


# Every way to run it: the SDK's `jobwire` (`python -m jobwire` is that script), the
# broker's module, and the broker's own script.
ENTRY_POINTS = {
    "jobwire": [sys.executable, "-m", "jobwire", "serve"],
    "python -m jobwire_broker": [sys.executable, "-m", "jobwire_broker", "serve"],
    "jobwire-broker": [str(Path(sys.executable).parent / "jobwire-broker"), "serve"],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_serve_help_names_jobwire_serve(entry: str) -> None:
    command = ENTRY_POINTS[entry]
    run = subprocess.run([*command, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert (run.returncode, run.stderr) == (0, "")
    assert run.stdout.startswith("usage: jobwire serve ")
    for action in serve_parser()._actions:
        for option in action.option_strings:
            assert option in run.stdout
    assert "--fsync {always,everysec}" in run.stdout
