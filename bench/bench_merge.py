"""Stage + MERGE of a generated file into large targets on the local path, against a bare delta-rs merge.

    .venv/bin/python bench/bench_merge.py       # the issue's sizes: a 1M-row file into 1M, 5M and 10M-row targets
    .venv/bin/python bench/bench_merge.py --file-rows 20000 --target-rows 200000 --growth 100000 --results /tmp/m.md

Every target size gets a fresh process for the job: a local Spark session (`--driver-memory`: the
local path collects each batch to the driver through `toArrow`), a small warm-up batch so that the
measured run pays neither the JVM start nor the first queries' compilation, then the job's own task
bodies on a copy of the target: `stage_load` (read, check, write `_stage` and `_rejects`) and
`target_load` (dedupe, MERGE, `processing_log` row, stage release), as `make demo` runs them.

The floor is one bare `DeltaTable.merge` of exactly the rows the job merged (saved to Parquet as the
job handed them to delta-rs) into another copy of the same target, in a fresh process of its own.

Peak memory is the resident memory of the process tree (Python, the JVM, Spark's Python workers),
summed and sampled every 0.1 s from outside, per size and for the floor alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from filegate.contracts import load_contracts  # noqa: E402
from spark_jobs.columns import target_schema  # noqa: E402
from spark_jobs.generate import DATASET, file_name, write_day  # noqa: E402
from spark_jobs.merge import latest_wins_merge  # noqa: E402
from spark_jobs.warehouse import DeltaRsWarehouse, MergeCounts, MergeSpec  # noqa: E402

CONTRACT = load_contracts()[DATASET]
DAY = date(2025, 3, 3)
SEED = 11
WARMUP_ROWS = 5_000
RESULTS = Path(__file__).with_name("results") / "merge.md"
SAMPLE_SECONDS = 0.1


# --- measuring from outside -------------------------------------------------------------------


def tree_rss_kib(root: int) -> int:
    """Resident memory of a process and all its descendants right now, in KiB."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total


def run_sampled(command: list[str], log: Path) -> float:
    """Run a child to its end; its process tree's peak resident memory, in MiB."""
    peak = 0
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss_kib(process.pid))
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"{command[2]} failed with exit code {code}:\n{tail}")
    return peak / 1024


# --- data -------------------------------------------------------------------------------------


def write_file(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        write_day(out, SEED, DAY, rows, rows // 10_000, 0.05, 0.03)


def build_target(path: Path, rows: int, file_keys: pa.Array) -> None:
    """A target of `rows` keys: half of the file's keys with older statuses, the rest synthetic."""
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = pa.schema([field.with_nullable(True) for field in to_arrow_schema(target_schema(CONTRACT))])
    overlap = file_keys.slice(0, min(len(file_keys) // 2, rows)).cast(pa.string())
    old = datetime(2025, 3, 1, tzinfo=UTC)
    written = 0
    while written < rows:
        size = min(1_000_000, rows - written)
        keys = overlap if written == 0 else pa.array([], pa.string())
        numbers = pc.cast(pa.array(range(written, written + size - len(keys))), pa.string())
        tracking = pa.concat_arrays([keys, pc.binary_join_element_wise("T", numbers, "")])
        columns: dict[str, pa.Array] = {}
        for field in schema:
            if field.name == "tracking_num":
                columns[field.name] = tracking
            elif field.name in ("status_ts", "_ingested_at"):
                columns[field.name] = pa.array([old] * size, field.type)
            elif field.name == "status":
                columns[field.name] = pa.array(["PICKED_UP"] * size)
            elif field.name == "carrier":
                columns[field.name] = pa.array(["UPS"] * size)
            elif pa.types.is_string(field.type):
                columns[field.name] = pa.array(["x"] * size)
            else:
                columns[field.name] = pa.nulls(size, field.type)
        write_deltalake(str(path), pa.table(columns, schema=schema), mode="append")
        written += size


# --- the job, in its own process --------------------------------------------------------------


class RecordingWarehouse(DeltaRsWarehouse):
    """The job's delta-rs warehouse, keeping the rows it hands to the MERGE (a reference, not a copy)."""

    merged: pa.Table | None = None

    def merge_arrow(self, table: str, source: pa.Table, spec: MergeSpec) -> MergeCounts:
        self.merged = source
        return super().merge_arrow(table, source, spec)


def run_job(job: dict[str, Any]) -> None:
    """Warm up, then stage and merge one file with the job's own task bodies; timings into job['out']."""
    from pyspark.sql import SparkSession

    from spark_jobs import stage_load, target_load
    from spark_jobs.task import TaskArguments

    spark = (
        SparkSession.builder.appName("bench-merge")
        .master("local[*]")
        .config("spark.driver.memory", job["driver_memory"])
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")

    def load(source: str, warehouse: DeltaRsWarehouse, batch_id: str) -> tuple[float, float]:
        arguments = TaskArguments(
            source_path=source,
            source_file=source,
            dataset=DATASET,
            batch_id=batch_id,
            catalog="local",
            schema=str(warehouse.root),
            contracts_dir=None,
            delta_engine="delta-rs",
        )
        started = datetime.now(UTC)
        begin = time.perf_counter()
        stage_load.stage(spark, warehouse, CONTRACT, arguments, started)
        staged = time.perf_counter()
        target_load.merge_batch(spark, warehouse, CONTRACT, arguments, started)
        return staged - begin, time.perf_counter() - staged

    load(job["warmup"], DeltaRsWarehouse(spark, Path(job["warmup_warehouse"])), "warmup")
    warehouse = RecordingWarehouse(spark, Path(job["warehouse"]))
    stage_s, target_s = load(job["source"], warehouse, job["batch_id"])
    if warehouse.merged is None:
        raise RuntimeError("the job merged nothing")
    pq.write_table(warehouse.merged, job["merged"])
    log = DeltaTable(str(Path(job["warehouse"]) / "processing_log")).to_pyarrow_dataset().to_table().to_pylist()
    (run,) = [row for row in log if row["batch_id"] == job["batch_id"]]
    Path(job["out"]).write_text(
        json.dumps({"stage_s": stage_s, "target_s": target_s, **{k: run[k] for k in run if k.startswith("rows_")}})
    )
    spark.stop()


# --- the floor, in its own process ------------------------------------------------------------


def run_floor(floor: dict[str, Any]) -> None:
    """One bare delta-rs MERGE of the job's merge source into a copy of the target."""
    spec = latest_wins_merge(CONTRACT, target_schema(CONTRACT).fieldNames())
    data = pq.read_table(floor["merged"])
    started = time.perf_counter()
    merger = DeltaTable(floor["target"]).merge(data, predicate=spec.predicate, source_alias="s", target_alias="t")
    for clause in spec.when_matched_update:
        merger = merger.when_matched_update(dict(clause.assignments), clause.condition)
    for clause in spec.when_not_matched_insert:
        merger = merger.when_not_matched_insert(dict(clause.assignments), clause.condition)
    metrics = merger.execute()
    seconds = time.perf_counter() - started
    changed = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
    Path(floor["out"]).write_text(json.dumps({"seconds": seconds, "changed": changed, "rows": data.num_rows}))


# --- one size, and the report -----------------------------------------------------------------


def measure(size: int, args: argparse.Namespace, source: Path, file_keys: pa.Array, work: Path) -> dict[str, Any]:
    """Job and floor at one target size, each in a fresh process on its own copy of the same target."""
    base = work / f"target-{size}"
    if not base.exists():
        started = time.perf_counter()
        build_target(base / DATASET, size, file_keys)
        print(f"  built the {size:,}-row target in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    job_warehouse, floor_target = work / f"job-{size}", work / f"floor-{size}"
    for folder in (job_warehouse, floor_target, work / "warmup-warehouse"):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, job_warehouse)
    shutil.copytree(base / DATASET, floor_target)
    job = {
        "source": str(source),
        "warmup": str(work / "warmup.csv"),
        "warmup_warehouse": str(work / "warmup-warehouse"),
        "warehouse": str(job_warehouse),
        "batch_id": f"bench-{size}",
        "driver_memory": args.driver_memory,
        "merged": str(work / f"merged-{size}.parquet"),
        "out": str(work / f"job-{size}.json"),
    }
    log = work / "bench.log"
    job_peak = run_sampled([sys.executable, __file__, "--run-job", json.dumps(job)], log)
    floor = {"target": str(floor_target), "merged": job["merged"], "out": str(work / f"floor-{size}.json")}
    floor_peak = run_sampled([sys.executable, __file__, "--run-floor", json.dumps(floor)], log)
    job_result = json.loads(Path(job["out"]).read_text())
    floor_result = json.loads(Path(floor["out"]).read_text())
    changed = job_result["rows_inserted"] + job_result["rows_updated"]
    if floor_result["changed"] != changed:
        raise RuntimeError(f"the floor changed {floor_result['changed']} rows, the job {changed}: not the same work")
    job_s = job_result["stage_s"] + job_result["target_s"]
    for folder in (job_warehouse, floor_target):
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "target_rows": size,
        "file_rows": args.file_rows,
        "stage_s": job_result["stage_s"],
        "target_s": job_result["target_s"],
        "job_s": job_s,
        "job_rows_per_s": args.file_rows / job_s,
        "job_peak_mib": job_peak,
        "merged_rows": floor_result["rows"],
        "changed": changed,
        "floor_s": floor_result["seconds"],
        "floor_rows_per_s": args.file_rows / floor_result["seconds"],
        "floor_peak_mib": floor_peak,
    }


def render(results: list[dict[str, Any]], command: str, driver_memory: str) -> str:
    first = results[0]
    lines = [
        "# Merge benchmark (local path: Spark + delta-rs)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; Spark driver memory {driver_memory}; "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| target rows | file rows | stage s | target s | job s | job rows/s | job peak MiB | rows merged "
        "| rows changed | floor s | floor rows/s | floor peak MiB "
        f"| job time vs {first['target_rows']:,} | floor time vs {first['target_rows']:,} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['target_rows']:,} | {r['file_rows']:,} | {r['stage_s']:.1f} | {r['target_s']:.1f} "
            f"| {r['job_s']:.1f} | {r['job_rows_per_s']:,.0f} | {r['job_peak_mib']:,.0f} "
            f"| {r['merged_rows']:,} | {r['changed']:,} "
            f"| {r['floor_s']:.2f} | {r['floor_rows_per_s']:,.0f} | {r['floor_peak_mib']:,.0f} "
            f"| {r['job_s'] / first['job_s']:.2f}x | {r['floor_s'] / first['floor_s']:.2f}x |"
        )
    lines += [
        "",
        "Job = `stage_load` (read + check + write `_stage`/`_rejects`) and `target_load` (dedupe + MERGE +",
        "`processing_log` row + stage release), the job's own task bodies, each target size in a fresh process",
        "after a warm-up batch. Floor = one bare `deltalake` MERGE of exactly the rows the job merged (rows merged)",
        "into a copy of the same target, in a fresh process. Rows/s = file rows / seconds, for both. Peak memory =",
        f"resident memory of the whole process tree (Python, JVM, Python workers), sampled every {SAMPLE_SECONDS} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] in ("--run-job", "--run-floor"):
        (run_job if sys.argv[1] == "--run-job" else run_floor)(json.loads(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--target-rows", type=int, default=10_000_000)
    parser.add_argument("--growth", default="1000000,5000000", help="Further target sizes, comma-separated.")
    parser.add_argument("--driver-memory", default="4g", help="Spark driver memory of the job (default: 4g).")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"Where to write the table (default: {RESULTS}).")
    parser.add_argument("--work-dir", type=Path, help="Keep data here (default: a temporary folder).")
    args = parser.parse_args()
    sizes = sorted({args.target_rows, *(int(s) for s in args.growth.split(",") if s)})
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="filegate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        source = work / file_name(DAY)
        write_file(source, args.file_rows)
        write_file(work / "warmup.csv", WARMUP_ROWS)
        print(f"generated {args.file_rows:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        # The file carries malformed rows on purpose (one in 10,000); short ones are skipped here.
        keys = pcsv.read_csv(
            source,
            parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
            convert_options=pcsv.ConvertOptions(include_columns=["tracking_num"]),
        )
        file_keys = pc.unique(keys["tracking_num"].combine_chunks())
        results = []
        for size in sizes:
            print(f"target {size:,} rows ...", file=sys.stderr)
            results.append(measure(size, args, source, file_keys, work))
            print(f"  {json.dumps(results[-1])}", file=sys.stderr)
        table = render(results, "bench/bench_merge.py " + " ".join(sys.argv[1:]), args.driver_memory)
        print(table)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(table, encoding="utf-8")
        print(f"wrote {args.results} after {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
