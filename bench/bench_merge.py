"""Stage + MERGE of a generated file into a large target on the local path, against a bare delta-rs merge.

    .venv/bin/python bench/bench_merge.py                      # 1M-row file, 10M-row target, growth 1M..5M
    .venv/bin/python bench/bench_merge.py --file-rows 100000 --target-rows 1000000 --growth 200000,500000

The job path is what `make demo` runs: Spark reads and checks the CSV, delta-rs writes the stage,
Spark dedupes, delta-rs merges. The floor is one `DeltaTable.merge` of the same deduped rows into
the same target, in a fresh process. Peak memory is the high-water RSS of Python plus the JVM.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from filegate.contracts import load_contracts  # noqa: E402
from spark_jobs.columns import target_schema  # noqa: E402
from spark_jobs.generate import DATASET, file_name, write_day  # noqa: E402
from spark_jobs.merge import latest_wins_merge  # noqa: E402

DAY = date(2025, 3, 3)
RESULTS = Path(__file__).with_name("results") / "merge.md"


def process_tree_peak_mib(root: int) -> float:
    """Sum of VmHWM (peak RSS) over a process and its descendants, in MiB."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, StopIteration, ProcessLookupError):
            continue
    return total / 1024


def build_target(path: Path, rows: int, file_keys: pa.Array) -> None:
    """A target of `rows` keys: half of the file's keys with older statuses, the rest synthetic."""
    contract = load_contracts()[DATASET]
    schema = target_schema(contract)
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = pa.schema([field.with_nullable(True) for field in to_arrow_schema(schema)])
    overlap = file_keys.slice(0, min(len(file_keys) // 2, rows))
    chunk = 1_000_000
    written = 0
    old = datetime(2025, 3, 1, tzinfo=UTC)
    while written < rows:
        size = min(chunk, rows - written)
        keys = overlap if written == 0 else pa.array([])
        fill = size - len(keys)
        synthetic = pc.binary_join_element_wise("T", pc.cast(pa.array(range(written, written + fill)), pa.string()), "")
        columns: dict[str, pa.Array] = {}
        tracking = pa.concat_arrays([keys.cast(pa.string()), synthetic])
        for field in arrow_schema:
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
        write_deltalake(str(path), pa.table(columns, schema=arrow_schema), mode="append")
        written += size


def run_job(source: Path, warehouse: Path, batch_id: str) -> tuple[float, float, float]:
    """Stage and merge with the job's own functions; seconds for stage and for target."""
    from spark_jobs.session import build_session
    from spark_jobs.stage import Batch, stage_file
    from spark_jobs.target import load_target
    from spark_jobs.warehouse import DeltaRsWarehouse

    spark = build_session("bench", on_databricks=False)
    spark.sparkContext.setLogLevel("ERROR")
    contract = load_contracts()[DATASET]
    warehouse_ops = DeltaRsWarehouse(spark, warehouse)
    started = time.perf_counter()
    stage_file(spark, warehouse_ops, contract, str(source), Batch(DATASET, batch_id, str(source), datetime.now(UTC)))
    staged = time.perf_counter()
    counts = load_target(warehouse_ops, contract, batch_id)
    merged = time.perf_counter()
    print(f"  job: {counts}", file=sys.stderr)
    return staged - started, merged - staged, float(counts.inserted + counts.updated)


def floor_merge(target: Path, source: Path) -> dict[str, float]:
    """The bare delta-rs merge, in this (fresh) process."""
    contract = load_contracts()[DATASET]
    spec = latest_wins_merge(contract, target_schema(contract).fieldNames())
    import pyarrow.parquet as pq

    data = pq.read_table(source)
    started = time.perf_counter()
    merger = DeltaTable(str(target)).merge(data, predicate=spec.predicate, source_alias="s", target_alias="t")
    for clause in spec.when_matched_update:
        merger = merger.when_matched_update(dict(clause.assignments), clause.condition)
    for clause in spec.when_not_matched_insert:
        merger = merger.when_not_matched_insert(dict(clause.assignments), clause.condition)
    metrics = merger.execute()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "peak_mib": peak,
        "changed": metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"],
    }


def deduped_source(warehouse: Path, batch_id: str, out: Path) -> None:
    """The batch's latest row per key, as the job merged it, for the floor to merge too."""
    import pyarrow.parquet as pq

    stage = DeltaTable(str(warehouse / f"{DATASET}_stage")).to_pyarrow_dataset().to_table()
    frame = stage.filter(pc.equal(stage["_batch_id"], batch_id)).to_pandas()
    frame = frame.sort_values(["tracking_num", "status_ts"], ascending=[True, False]).drop_duplicates("tracking_num")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)


def measure(file_rows: int, target_rows: int, source: Path, file_keys: pa.Array, work: Path) -> dict[str, float]:
    """One side-by-side measurement at one target size."""
    base = work / f"target-{target_rows}"
    if not base.exists():
        build_target(base / DATASET, target_rows, file_keys)
    job_warehouse = work / f"job-{target_rows}"
    shutil.rmtree(job_warehouse, ignore_errors=True)
    shutil.copytree(base, job_warehouse)
    stage_s, merge_s, changed = run_job(source, job_warehouse, f"bench-{target_rows}")
    deduped = work / "deduped.parquet"
    deduped_source(job_warehouse, f"bench-{target_rows}", deduped)
    floor_target = work / f"floor-{target_rows}"
    shutil.rmtree(floor_target, ignore_errors=True)
    shutil.copytree(base / DATASET, floor_target)
    answer = subprocess.run(
        [sys.executable, __file__, "--floor", str(floor_target), str(deduped)],
        check=True,
        capture_output=True,
        text=True,
    )
    floor = json.loads(answer.stdout)
    total = stage_s + merge_s
    return {
        "target_rows": target_rows,
        "file_rows": file_rows,
        "stage_s": stage_s,
        "merge_s": merge_s,
        "job_s": total,
        "job_rows_per_s": file_rows / total,
        "changed": changed,
        "floor_s": floor["seconds"],
        "floor_rows_per_s": file_rows / floor["seconds"],
        "floor_peak_mib": floor["peak_mib"],
    }


def render(results: list[dict[str, float]], job_peak_mib: float, command: str) -> str:
    lines = [
        "# Merge benchmark (local path: Spark + delta-rs)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores; run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Job peak memory (Python + JVM, whole run): {job_peak_mib:,.0f} MiB.",
        "",
        "| target rows | file rows | stage s | merge s | job s | job rows/s | rows changed "
        "| floor merge s | floor rows/s | floor peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['target_rows']:,.0f} | {r['file_rows']:,.0f} | {r['stage_s']:.1f} | {r['merge_s']:.1f} "
            f"| {r['job_s']:.1f} | {r['job_rows_per_s']:,.0f} | {r['changed']:,.0f} | {r['floor_s']:.2f} "
            f"| {r['floor_rows_per_s']:,.0f} "
            f"| {r['floor_peak_mib']:,.0f} |"
        )
    lines += [
        "",
        "Job = stage (read + check + write `_stage`/`_rejects`) and target (dedupe + MERGE + log) with the job's own",
        "functions; floor = one bare `deltalake` MERGE of the same deduped rows into a copy of the same target.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--floor":
        print(json.dumps(floor_merge(Path(sys.argv[2]), Path(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file-rows", type=int, default=1_000_000)
    parser.add_argument("--target-rows", type=int, default=10_000_000)
    parser.add_argument("--growth", default="1000000,5000000", help="Further target sizes, comma-separated.")
    parser.add_argument("--work-dir", type=Path, help="Keep data here (default: a temporary folder).")
    args = parser.parse_args()
    sizes = sorted({args.target_rows, *(int(s) for s in args.growth.split(",") if s)})
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="filegate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = work / file_name(DAY)
        started = time.perf_counter()
        with source.open("w", encoding="utf-8", newline="") as out:
            write_day(out, 11, DAY, args.file_rows, 0, 0.05, 0.03)
        print(f"generated {args.file_rows:,} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        import pyarrow.csv as pcsv

        keys = pcsv.read_csv(source, convert_options=pcsv.ConvertOptions(include_columns=["tracking_num"]))
        file_keys = (
            pc.unique(keys["tracking_num"]).combine_chunks()
            if hasattr(pc.unique(keys["tracking_num"]), "combine_chunks")
            else pc.unique(keys["tracking_num"])
        )
        results = []
        for size in sizes:
            print(f"target {size:,} rows ...", file=sys.stderr)
            results.append(measure(args.file_rows, size, source, file_keys, work))
        table = render(results, process_tree_peak_mib(os.getpid()), "bench/bench_merge.py " + " ".join(sys.argv[1:]))
        print(table)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(table, encoding="utf-8")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
