"""The batch benchmark's front door: it starts, says what it measures, and seals days the batch job accepts."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from local_world.samples.ecommerce import Volumes, generate_volumes
from spark_jobs.batch import BatchArguments, parse_manifest
from spark_jobs.warehouse import LocalWarehouse

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench" / "bench_batch.py"


def test_help_names_the_scales_and_the_quick_run() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True, check=False, cwd=REPO)

    assert done.returncode == 0, done.stderr
    assert "--scales" in done.stdout
    assert "--quick" in done.stdout


def test_a_sealed_volume_day_is_a_manifest_the_batch_job_accepts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_volumes(date(2025, 1, 15), 1, 7, tmp_path / "data", Volumes.scaled(100))
    # The benchmarks import each other as scripts do: from their own folder.
    monkeypatch.syspath_prepend(str(BENCH.parent))
    bench_batch = importlib.import_module("bench_batch")

    manifest = bench_batch.seal(tmp_path / "data", date(2025, 1, 15), tmp_path)
    arguments = BatchArguments(
        manifest=str(manifest),
        manifest_uri=str(manifest),
        pipeline="ecommerce",
        batch_id="ecommerce-20250115",
        run_id=None,
        location=LocalWarehouse(tmp_path / "warehouse", "bench", "batch"),
        contracts_dir=None,
    )

    sealed = parse_manifest(json.loads(manifest.read_text(encoding="utf-8")), arguments)

    assert [m.dataset for m in sealed.members] == ["customers", "products", "inventory", "orders", "shipping"]
    assert [m.expected_rows for m in sealed.members] == [50, 5, 10, 100, 100]
    assert all(Path(m.read_path).is_file() for m in sealed.members)


def test_the_table_names_each_scales_command_and_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH.parent))
    bench_batch = importlib.import_module("bench_batch")
    tasks = bench_batch.TASKS

    def scale(number: int, command: str, commit: str) -> dict[str, object]:
        day = {
            "day": "2025-01-15",
            "seconds": dict.fromkeys(tasks, 10.0),
            "cpu_s": dict.fromkeys(tasks, 15.0),
            "peak_mib": dict.fromkeys(tasks, 3000.0),
            "jvm_cpu_s": 60.0,
            "statements": {task: [] for task in tasks},
        }
        floor = {"day": "2025-01-15", "stage": {"orders": 2.0}, "merge": {"orders_target": 3.0}}
        return {
            "scale": number,
            "volumes": Volumes.scaled(100 * number).__dict__,
            "generated_s": None,
            "driver_memory": "4g",
            "job": {"days": [day], "merges": [{"day": "2025-01-15", "table": "orders_target", "changed": 100}]},
            "floor": {"days": [{**floor, "stage_cpu_s": 3.0, "merge_cpu_s": 4.0}]},
            "job_peak_mib": 3500.0,
            "floor_peak_mib": 2000.0,
            "loads": [1.0],
            "days_requested": 1,
            "warehouse_tables": "/tmp/w",
            "command": command,
            "commit": commit,
        }

    table = bench_batch.render(
        [scale(1, "bench/bench_batch.py --scales 1", "abc1234"), scale(10, "b --scales 10", "def5678")]
    )

    assert "Command: `bench/bench_batch.py --scales 1` at abc1234" in table
    assert "Command: `b --scales 10` at def5678" in table
