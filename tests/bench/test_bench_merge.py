"""The merge benchmark's measuring from outside: the peak memory it reports is the process tree's own."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_merge.py"

# A process holding 200 MiB that forks a child which, like a command a JVM spawns before its exec, shares
# those pages, and then may take pages of its own; both wait for their stdin to close.
FORKING = """
import os, sys
held = b"x" * (200 << 20)
child = os.fork()
if child == 0:
    own = b"y" * (int(sys.argv[1]) << 20)
    print("forked", flush=True)
    sys.stdin.read()
    os._exit(0)
sys.stdin.read()
os.waitpid(child, 0)
"""


@pytest.fixture
def bench_merge(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The benchmarks import each other as scripts do: from their own folder.
    monkeypatch.syspath_prepend(str(BENCH.parent))
    return importlib.import_module("bench_merge")


def vm_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@contextmanager
def forking(child_mib: int) -> Iterator[subprocess.Popen[str]]:
    """FORKING running, its child holding `child_mib` MiB of its own."""
    command = [sys.executable, "-c", FORKING, str(child_mib)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "forked\n"
        yield process
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def test_a_forked_child_does_not_count_its_parents_memory_again(bench_merge: ModuleType) -> None:
    with forking(0) as process:
        parent = vm_rss_kib(process.pid)

        tree = bench_merge.tree_memory_kib(process.pid)

    assert parent > 200 << 10
    assert tree < parent + (50 << 10)


def test_a_forked_childs_own_memory_counts(bench_merge: ModuleType) -> None:
    with forking(300) as process:
        parent = vm_rss_kib(process.pid)

        tree = bench_merge.tree_memory_kib(process.pid)

    assert tree > parent + (250 << 10)


def test_a_child_that_ran_another_program_counts(bench_merge: ModuleType) -> None:
    # The child inherits both pipes: its line says that its own interpreter runs, holding 100 MiB.
    child = "import sys; own = b'y' * (100 << 20); print('running', flush=True); sys.stdin.read()"
    script = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "running\n"

        tree = bench_merge.tree_memory_kib(process.pid)

        assert tree > 100 << 10
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)


def test_the_commit_read_is_heads_and_says_when_tracked_files_differ(bench_merge: ModuleType, tmp_path: Path) -> None:
    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], cwd=tmp_path, capture_output=True, text=True, check=True)
        return done.stdout.strip()

    git("init", "-q")
    (tmp_path / "job.py").write_text("a = 1\n")
    results = tmp_path / "bench" / "results" / "merge.md"
    results.parent.mkdir(parents=True)
    results.write_text("# earlier runs\n")
    git("add", "job.py", str(results))
    git("-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "first")
    head = git("rev-parse", "--short", "HEAD")
    (tmp_path / "notes.txt").write_text("untracked files do not run\n")
    results.write_text("# the last run, written by the benchmark\n")

    clean = bench_merge.checkout(tmp_path)
    (tmp_path / "job.py").write_text("a = 2\n")
    changed = bench_merge.checkout(tmp_path)

    assert clean == head
    assert changed == f"{head} with uncommitted changes"


def test_the_table_names_the_commit_and_the_load_it_was_measured_at(bench_merge: ModuleType) -> None:
    row = {
        "target_rows": 1_000_000,
        "file_rows": 1_000_000,
        "stage_s": 18.0,
        "target_s": 17.0,
        "job_s": 35.0,
        "job_peak_mib": 3000.0,
        "merged_rows": 474_995,
        "changed": 474_995,
        "floor_s": 13.0,
        "floor_peak_mib": 2200.0,
        "delta_rs_s": 0.8,
        "delta_rs_peak_mib": 790.0,
    }

    table = bench_merge.render([row], "bench/bench_merge.py --growth ''", "4g", "abc1234", [0.4, 2.5])

    assert "Command: `bench/bench_merge.py --growth ''` at abc1234" in table
    assert "load average 0.4 to 2.5" in table
    assert "| 2.69x |" in table
