"""benchmarks/README.md indexes every file that git tracks under benchmarks/: the file, or a folder holding it."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INDEX = ROOT / "benchmarks" / "README.md"
SHARED_FOLDERS = {"results/"}
"""Folders that hold every tool's output: naming one does not index the files in it, each is named itself."""


def tracked_benchmark_files() -> list[str]:
    """Paths relative to ``benchmarks/`` of the files git tracks there, but the index itself."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout")
    out = subprocess.run(["git", "ls-files", "benchmarks"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line.removeprefix("benchmarks/") for line in out.stdout.splitlines() if line and line != "benchmarks/README.md"]


def named_paths(text: str) -> set[str]:
    """Every path-like word of the index, relative to ``benchmarks/`` (a leading ``benchmarks/`` dropped)."""
    return {word.removeprefix("benchmarks/") for word in re.findall(r"[\w.\-/]+", text)}


def indexed(path: str, names: set[str]) -> bool:
    """The path itself, or one of its folders below ``benchmarks/`` (but a shared one) with a trailing slash, is named."""
    parts = path.split("/")
    folders = {"/".join(parts[:i]) + "/" for i in range(1, len(parts))} - SHARED_FOLDERS
    return path in names or bool(folders & names)


def test_every_benchmark_file_is_indexed():
    names = named_paths(INDEX.read_text())
    missing = [path for path in tracked_benchmark_files() if not indexed(path, names)]
    assert not missing, f"benchmarks/README.md does not name these files or their folders: {missing}"


def test_a_folder_counts_only_with_its_slash():
    names = named_paths("`results/free_flight/` and `bench_emt.py`, not results")
    assert indexed("results/free_flight/wall.txt", names) and indexed("bench_emt.py", names)
    assert not indexed("results/emt.json", names) and not indexed("bench_engine.py", names)
    assert not indexed("results/emt.json", named_paths("JSON in `benchmarks/results/`"))
