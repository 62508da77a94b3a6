"""Stage + MERGE of a generated file into large targets with Delta Lake on Spark, against a bare MERGE.

    .venv/bin/python bench/bench_merge.py       # the issue's sizes: a 1M-row file into 1M, 5M and 10M-row targets
    .venv/bin/python bench/bench_merge.py --file-rows 20000 --target-rows 200000 --growth 100000 --results /tmp/m.md

Every target size gets a fresh process for the job: a local Spark session with Delta Lake (the
project's jars), a small warm-up batch (5,000 rows into a 5,000-row target holding half their keys,
older: the measured run in miniature) so that the measured run pays neither the JVM start nor the
first queries' compilation, then the job's own task bodies on a copy of the target: `stage_load`
(read, check, write `_stage` and `_rejects`) and `target_load` (dedupe, MERGE, `processing_log` row,
stage release), as `make demo` runs them.

The floor is one bare Delta-on-Spark `MERGE INTO` of exactly the rows the job merged (saved to
Parquet as the job handed them to its MERGE, outside the job's timing) into another copy of the
same target, in a fresh process of its own, warmed up by a bare MERGE of the rows the job's warm-up
merged into another copy of the same small target. A second reference is one bare
delta-rs merge of the same rows (`deltalake`, on a copy without deletion vectors, which delta-rs
cannot write).

Peak memory is the memory of the process tree (Python, the JVM, the commands they run), each page
counted once (`tree_memory_kib`), sampled every 0.1 s from outside, per size and for both references
alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
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

from filegate.contracts import load_contracts, quoted_name  # noqa: E402
from local_world.samples.order_tracking import DATASET, file_name, write_day  # noqa: E402
from spark_jobs.columns import target_schema  # noqa: E402
from spark_jobs.merge import MergeClause, latest_wins_merge  # noqa: E402
from spark_jobs.target_definition import definition  # noqa: E402
from spark_jobs.warehouse import (  # noqa: E402
    LocalWarehouse,
    MergeCounts,
    MergeSpec,
    Warehouse,
    merge_statement,
    sql_string,
)

CONTRACT = load_contracts()[DATASET]
DAY = date(2025, 3, 3)
SEED = 11
WARMUP_ROWS = 5_000
RESULTS = Path(__file__).with_name("results") / "merge.md"
SAMPLE_SECONDS = 0.1
CATALOG, SCHEMA = "bench", "ingest"


# --- measuring from outside -------------------------------------------------------------------


def memory_layout(pid: int) -> tuple[str, ...] | None:
    """Where a process's code, stack, data and arguments lie (/proc's stat); None where /proc hides them."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is stat's field 3; startcode to startstack are fields 26 to 28, start_data to env_end 45 to 51.
    layout = (*fields[23:26], *fields[42:49])
    return layout if any(int(value) for value in layout) else None


def _kib(text: str, *names: str) -> int:
    """The sum of the named `Name:  N kB` lines of a /proc status or smaps_rollup text."""
    return sum(int(line.split()[1]) for line in text.splitlines() if line.split(":")[0] in names)


def tree_memory_kib(root: int) -> int:
    """The memory a process and all its descendants hold right now, in KiB, each page counted once.

    A process that ran its own program counts its resident memory (VmRSS). A child with its parent's memory
    layout has not called exec since its fork and shares its parent's pages, which VmRSS shows as its own: a JVM
    spawns every command (Hadoop's chmod of each file it writes locally) so, and a 0.1 s sampler caught peaks
    up to twice the JVM's. Such a child counts only its private pages (smaps_rollup), a forked Python worker's
    included. Not Pss for all: reading a JVM's smaps_rollup ten times a second walks its page tables under its
    memory lock, and slowed the job it measured (the bench's system time rose fourfold).
    """
    total = 0
    pending: list[tuple[int, tuple[str, ...] | None]] = [(root, None)]
    while pending:
        pid, parent = pending.pop()
        try:
            layout = memory_layout(pid)
            forked = layout is not None and layout == parent
            if forked:
                own = _kib(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Private_Clean", "Private_Dirty")
            else:
                own = _kib(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
            children = [
                int(child)
                for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()
            ]
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += own
        pending += [(child, layout) for child in children]
    return total


def run_sampled(command: list[str], log: Path) -> float:
    """Run a child to its end; its process tree's peak memory (`tree_memory_kib`), in MiB."""
    peak = 0
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=REPO)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_memory_kib(process.pid))
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


def read_keys(path: Path) -> pa.Array:
    """The distinct keys of a generated file."""
    # The file carries malformed rows on purpose (one in 10,000); short ones are skipped here.
    keys = pcsv.read_csv(
        path,
        parse_options=pcsv.ParseOptions(invalid_row_handler=lambda row: "skip"),
        convert_options=pcsv.ConvertOptions(include_columns=["tracking_num"]),
    )
    return pc.unique(keys["tracking_num"].combine_chunks())


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


def bench_session(driver_memory: str) -> Any:
    """A local Spark with Delta Lake, sized for millions of rows: code generation on and the JVM's default
    collector, not spark_jobs/local_spark.py's small-data settings. The job and its floor share it."""
    from pyspark.sql import SparkSession

    from spark_jobs.delta_jars import delta_spark_conf

    spark = (
        SparkSession.builder.appName("bench-merge")
        .master("local[*]")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "UTC")
        .config(map=delta_spark_conf())
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def prepare_target(spark: Any, path: Path) -> None:
    """What a target built by delta-rs lacks and the job's own targets have, set untimed: the table feature
    they get (and Databricks' defaults) and the pinned definition, which the job would otherwise add in
    its timed run as a takeover of an unpinned target."""
    settings = {"delta.enableDeletionVectors": "true", **definition(CONTRACT)}
    pairs = ", ".join(f"{sql_string(key)} = {sql_string(value)}" for key, value in settings.items())
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})").collect()


class RecordingWarehouse(Warehouse):
    """The job's warehouse, saving the rows it hands to the MERGE to Parquet (timed, to be taken out)."""

    merged: Path | None = None
    saving_s = 0.0

    def merge(self, table: str, source: Any, spec: MergeSpec) -> MergeCounts:
        if self.merged is not None:
            begin = time.perf_counter()
            source().write.mode("overwrite").parquet(str(self.merged))
            self.saving_s += time.perf_counter() - begin
        return super().merge(table, source, spec)


def run_job(job: dict[str, Any]) -> None:
    """Warm up, then stage and merge one file with the job's own task bodies; timings into job['out']."""
    from spark_jobs import stage_load, target_load
    from spark_jobs.task import TaskArguments

    spark = bench_session(job["driver_memory"])

    def load(source: str, warehouse: Warehouse, batch_id: str) -> tuple[float, float]:
        arguments = TaskArguments(
            source_path=source,
            source_file=source,
            dataset=DATASET,
            batch_id=batch_id,
            location=warehouse.location,
            contracts_dir=None,
        )
        started = datetime.now(UTC)
        begin = time.perf_counter()
        stage_load.stage(spark, warehouse, CONTRACT, arguments, started)
        staged = time.perf_counter()
        target_load.merge_batch(spark, warehouse, CONTRACT, arguments, started)
        return staged - begin, time.perf_counter() - staged

    warm = LocalWarehouse(Path(job["warmup_warehouse"]), CATALOG, SCHEMA)
    prepare_target(spark, warm.path(DATASET))
    warming = RecordingWarehouse(spark, warm)
    warming.merged = Path(job["warmup_merged"])
    load(job["warmup"], warming, "warmup")
    location = LocalWarehouse(Path(job["warehouse"]), CATALOG, SCHEMA)
    prepare_target(spark, location.path(DATASET))
    warehouse = RecordingWarehouse(spark, location)
    warehouse.merged = Path(job["merged"])
    stage_s, target_s = load(job["source"], warehouse, job["batch_id"])
    log = spark.table(location.name("processing_log")).toArrow().to_pylist()
    (run,) = [row for row in log if row["batch_id"] == job["batch_id"]]
    result = {"stage_s": stage_s, "target_s": target_s - warehouse.saving_s, "saving_s": warehouse.saving_s}
    Path(job["out"]).write_text(json.dumps({**result, **{k: run[k] for k in run if k.startswith("rows_")}}))
    spark.stop()


# --- the references, each in its own process --------------------------------------------------


def run_floor(floor: dict[str, Any]) -> None:
    """One bare Delta-on-Spark MERGE of the job's merge source into a copy of the target, after a warm-up."""
    spark = bench_session(floor["driver_memory"])
    spec = latest_wins_merge(CONTRACT, target_schema(CONTRACT).fieldNames())
    # Warm-up: the MERGE the job's warm-up made, into a copy of its small target, so that the measured MERGE
    # pays no first-query compilation. It updates through deletion vectors and inserts, as the measured one
    # does: a table's own rows merged into it would change nothing.
    warm = Path(floor["warmup_target"])
    prepare_target(spark, warm)
    spark.read.parquet(floor["warmup_merged"]).createOrReplaceTempView("warm_source")
    (warmed,) = spark.sql(merge_statement(f"delta.`{warm}`", "warm_source", spec)).collect()
    if not (warmed["num_updated_rows"] and warmed["num_inserted_rows"]):
        raise RuntimeError(f"the floor's warm-up MERGE updated or inserted no row: {warmed}")
    prepare_target(spark, Path(floor["target"]))
    spark.read.parquet(floor["merged"]).createOrReplaceTempView("merged")
    started = time.perf_counter()
    (metrics,) = spark.sql(merge_statement(f"delta.`{floor['target']}`", "merged", spec)).collect()
    seconds = time.perf_counter() - started
    rows = spark.read.parquet(floor["merged"]).count()
    changed = metrics["num_inserted_rows"] + metrics["num_updated_rows"]
    Path(floor["out"]).write_text(json.dumps({"seconds": seconds, "changed": changed, "rows": rows}))
    spark.stop()


def run_delta_rs(reference: dict[str, Any]) -> None:
    """One bare delta-rs merge of the same rows into a copy of the target (a second reference)."""
    spec = latest_wins_merge(CONTRACT, target_schema(CONTRACT).fieldNames())
    # DataFusion has no to_json: the tie-break between equal instants is left out (the generated target
    # holds only older instants of the file's keys, so no tie arises and the changes are the same).
    (clause,) = spec.when_matched_update
    sequence = CONTRACT.sequence_by
    newer = MergeClause(clause.assignments, condition=f"s.{quoted_name(sequence)} > t.{quoted_name(sequence)}")
    data = pq.read_table(reference["merged"])
    started = time.perf_counter()
    merger = DeltaTable(reference["target"]).merge(data, predicate=spec.predicate, source_alias="s", target_alias="t")
    merger = merger.when_matched_update(dict(newer.assignments), newer.condition)
    for insert in spec.when_not_matched_insert:
        merger = merger.when_not_matched_insert(dict(insert.assignments), insert.condition)
    metrics = merger.execute()
    seconds = time.perf_counter() - started
    changed = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
    Path(reference["out"]).write_text(json.dumps({"seconds": seconds, "changed": changed, "rows": data.num_rows}))


# --- one size, and the report -----------------------------------------------------------------


def measure(size: int, args: argparse.Namespace, source: Path, file_keys: pa.Array, work: Path) -> dict[str, Any]:
    """Job, floor and delta-rs at one target size, each in a fresh process on its own copy of the same target."""
    warmup_base = work / "warmup-target"
    if not warmup_base.exists():
        build_target(warmup_base, WARMUP_ROWS, read_keys(work / "warmup.csv"))
    base = work / f"target-{size}"
    if not base.exists():
        started = time.perf_counter()
        build_target(base, size, file_keys)
        print(f"  built the {size:,}-row target in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    job_warehouse = work / f"job-{size}"
    floor_target, delta_rs_target = work / f"floor-{size}", work / f"delta-rs-{size}"
    merged = work / f"merged-{size}.parquet"
    warmup_warehouse, floor_warmup = work / "warmup-warehouse", work / "floor-warmup"
    warmup_merged = work / "warmup-merged.parquet"
    for folder in (job_warehouse, floor_target, delta_rs_target, warmup_warehouse, floor_warmup, merged, warmup_merged):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(warmup_base, LocalWarehouse(warmup_warehouse, CATALOG, SCHEMA).path(DATASET))
    shutil.copytree(warmup_base, floor_warmup)
    shutil.copytree(base, LocalWarehouse(job_warehouse, CATALOG, SCHEMA).path(DATASET))
    shutil.copytree(base, floor_target)
    shutil.copytree(base, delta_rs_target)
    job = {
        "source": str(source),
        "warmup": str(work / "warmup.csv"),
        "warmup_warehouse": str(warmup_warehouse),
        "warmup_merged": str(warmup_merged),
        "warehouse": str(job_warehouse),
        "batch_id": f"bench-{size}",
        "driver_memory": args.driver_memory,
        "merged": str(merged),
        "out": str(work / f"job-{size}.json"),
    }
    log = work / "bench.log"
    job_peak = run_sampled([sys.executable, __file__, "--run-job", json.dumps(job)], log)
    floor = {
        "target": str(floor_target),
        "merged": str(merged),
        "warmup_target": str(floor_warmup),
        "warmup_merged": str(warmup_merged),
        "driver_memory": args.driver_memory,
        "out": str(work / f"floor-{size}.json"),
    }
    floor_peak = run_sampled([sys.executable, __file__, "--run-floor", json.dumps(floor)], log)
    reference = {"target": str(delta_rs_target), "merged": str(merged), "out": str(work / f"delta-rs-{size}.json")}
    delta_rs_peak = run_sampled([sys.executable, __file__, "--run-delta-rs", json.dumps(reference)], log)
    job_result = json.loads(Path(job["out"]).read_text())
    floor_result = json.loads(Path(floor["out"]).read_text())
    delta_rs_result = json.loads(Path(reference["out"]).read_text())
    changed = job_result["rows_inserted"] + job_result["rows_updated"]
    for name, result in (("floor", floor_result), ("delta-rs", delta_rs_result)):
        if result["changed"] != changed:
            raise RuntimeError(f"the {name} changed {result['changed']} rows, the job {changed}: not the same work")
    job_s = job_result["stage_s"] + job_result["target_s"]
    for folder in (job_warehouse, floor_target, delta_rs_target):
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "target_rows": size,
        "file_rows": args.file_rows,
        "stage_s": job_result["stage_s"],
        "target_s": job_result["target_s"],
        "job_s": job_s,
        "job_peak_mib": job_peak,
        "merged_rows": floor_result["rows"],
        "changed": changed,
        "floor_s": floor_result["seconds"],
        "floor_peak_mib": floor_peak,
        "delta_rs_s": delta_rs_result["seconds"],
        "delta_rs_peak_mib": delta_rs_peak,
    }


def checkout(repo: Path = REPO) -> str:
    """The commit the benchmark runs, and whether tracked files differ from it: what a result was measured on."""

    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "no git commit found"
    # The results folder aside: a run writes bench/results/, and the next would read as measuring changed code.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return f"{commit} with uncommitted changes" if changed else commit


def render(results: list[dict[str, Any]], command: str, driver_memory: str, commit: str, loads: list[float]) -> str:
    first = results[0]
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        "# Merge benchmark (Delta Lake on Spark, local)",
        "",
        f"Command: `{command}` at {commit}  ",
        f"Machine: {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, Python {platform.python_version()}; "
        f"Spark driver memory {driver_memory}; 1-minute load average {min(loads):.1f} to {max(loads):.1f}, at the "
        f"start and after each size (shared); run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| target rows | file rows | stage s | target s | job s | job peak MiB | rows merged | rows changed "
        "| floor s (Spark MERGE) | floor peak MiB | job / floor | delta-rs merge s | delta-rs peak MiB "
        f"| job time vs {first['target_rows']:,} | floor time vs {first['target_rows']:,} |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['target_rows']:,} | {r['file_rows']:,} | {r['stage_s']:.1f} | {r['target_s']:.1f} "
            f"| {r['job_s']:.1f} | {r['job_peak_mib']:,.0f} | {r['merged_rows']:,} | {r['changed']:,} "
            f"| {r['floor_s']:.1f} | {r['floor_peak_mib']:,.0f} | {r['job_s'] / r['floor_s']:.2f}x "
            f"| {r['delta_rs_s']:.1f} | {r['delta_rs_peak_mib']:,.0f} "
            f"| {r['job_s'] / first['job_s']:.2f}x | {r['floor_s'] / first['floor_s']:.2f}x |"
        )
    lines += [
        "",
        "Job = `stage_load` (read + check + write `_stage`/`_rejects`) and `target_load` (dedupe + tie count +",
        "MERGE + `processing_log` row + stage release), the job's own task bodies on Delta Lake on Spark, each",
        "target size in a fresh process after a warm-up batch. Floor = one bare Delta-on-Spark `MERGE INTO` of",
        "exactly the rows the job merged (rows merged) into a copy of the same target, in a fresh process after",
        "a warm-up MERGE; job / floor is the goal's ratio (1.5x). delta-rs = one bare `deltalake` merge of the",
        "same rows, a second reference. Peak memory = memory of the whole process tree (Python, JVM, the",
        "commands they run; a child forked without an exec counts only its private pages), sampled every",
        f"{SAMPLE_SECONDS} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    children = {"--run-job": run_job, "--run-floor": run_floor, "--run-delta-rs": run_delta_rs}
    if len(sys.argv) == 3 and sys.argv[1] in children:
        children[sys.argv[1]](json.loads(sys.argv[2]))
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
    # Read before the run: the table says what was measured even if the tree changes meanwhile.
    commit = checkout()
    started = time.perf_counter()
    try:
        source = work / file_name(DAY)
        write_file(source, args.file_rows)
        write_file(work / "warmup.csv", WARMUP_ROWS)
        print(f"generated {args.file_rows:,} rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        file_keys = read_keys(source)
        results = []
        loads = [os.getloadavg()[0]]
        for size in sizes:
            print(f"target {size:,} rows ...", file=sys.stderr)
            results.append(measure(size, args, source, file_keys, work))
            loads.append(os.getloadavg()[0])
            print(f"  {json.dumps(results[-1])}", file=sys.stderr)
        command = shlex.join(["bench/bench_merge.py", *sys.argv[1:]])
        table = render(results, command, args.driver_memory, commit, loads)
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
