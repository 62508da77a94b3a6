"""The batch job's four tasks on generated days at the issue's daily sizes, against bare Delta-on-Spark writes.

    .venv/bin/python bench/bench_batch.py                 # 1x and 10x the issue's day, two days each
    .venv/bin/python bench/bench_batch.py --quick         # 5k orders a day, 1x only: minutes, mostly warm-up
    .venv/bin/python bench/bench_batch.py --scales 1 --days 3 --results /tmp/batch.md

A scale's days come from the e-commerce generator's volume days (1x: 100k orders, 50k customers, 5k
products, 10k inventory rows, 100k shipments a day). Each scale gets a fresh process for the job: a
local Spark session with Delta Lake (the project's jars, code generation on, as bench/bench_merge.py),
a warm-up batch (the committed sample day) in a warehouse of its own, then the sealed days in order
into one warehouse, each through the four tasks the bundle's entry points run (`stage_members`,
`validate`, `merge_targets`, `derive_tables`), so that day 2 merges into targets holding day 1.

The floor, in a fresh process of its own with the same warm-up, is per day:
- for staging, one bare Delta write of each member file as Spark's CSV reader gives it (strings, no
  checks) into a table of its own;
- for each target, one bare `MERGE INTO` of exactly the rows the job's MERGE received (saved to
  Parquet outside the job's timing) into a copy of the target as it was before the job's MERGE (its
  change data feed turned off), with the job's own clauses. All five targets are SCD2: that MERGE is
  the write a history MERGE cannot avoid (insert the new versions, close or re-bound the old); what the
  job spends before it (recording observations, rebuilding the touched keys' versions) is the price of
  correct history in any order.

Peak memory: of the whole process (from outside, as bench/bench_merge.py), and per task (the same
process-tree sum, sampled every 0.1 s while the task runs; a JVM rarely gives memory back, so a task's
peak includes what earlier tasks left). Per-statement timings of the last day (as bench/profile_tasks.py
does) show where each task's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_merge import SAMPLE_SECONDS, bench_session, checkout, run_sampled, tree_memory_kib  # noqa: E402
from profile_tasks import process_cpu, time_statements  # noqa: E402

from filegate.contracts import load_contracts  # noqa: E402
from filegate.jobs import pipeline_batch_id  # noqa: E402
from local_world.samples.ecommerce import MEMBERS, PIPELINE, Volumes, file_name, generate_volumes  # noqa: E402
from spark_jobs.warehouse import LocalWarehouse  # noqa: E402

FIRST_DAY = date(2025, 1, 15)
SEED = 7
WARMUP = REPO / "data" / "samples" / "ecommerce"
WARMUP_DAY = date(2025, 1, 15)
RESULTS = Path(__file__).with_name("results") / "batch.md"
CATALOG, SCHEMA = "bench", "batch"
TASKS = ("stage_members", "validate", "merge_targets", "derive_tables")
WARMUP_ROWS = 5_000
# Statements of a task listed in the report (the slowest first).
SHOWN_STATEMENTS = 10


# --- the sealed days ----------------------------------------------------------------------------


def seal(folder: Path, day: date, out: Path) -> Path:
    """A sealed manifest of one generated day, in the form filegate.batches writes, with local paths as URIs."""
    trigger = json.loads((folder / f"trigger_{day:%Y_%m_%d}.json").read_text(encoding="utf-8"))
    members = [
        {"dataset": entry["dataset"], "uri": str(folder / entry["file"]), "expected_rows": entry["rows"]}
        for entry in trigger["files"]
    ]
    document = {
        "pipeline": PIPELINE,
        "business_date": day.isoformat(),
        "revision": 1,
        "partial": False,
        "batch_id": pipeline_batch_id(PIPELINE, day),
        "members": members,
    }
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"_sealed.{day.isoformat()}.r1.json"
    manifest.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return manifest


# --- per-task memory, from a thread that reads /proc -----------------------------------------------


class TreePeaks:
    """The process tree's peak memory (`tree_memory_kib`) while each named phase runs, in MiB."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self._phase: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            phase = self._phase
            if phase is not None:
                self.peaks[phase] = max(self.peaks.get(phase, 0.0), tree_memory_kib(os.getpid()) / 1024)
            self._done.wait(SAMPLE_SECONDS)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self._phase = name
        try:
            yield
        finally:
            self.peaks[name] = max(self.peaks.get(name, 0.0), tree_memory_kib(os.getpid()) / 1024)
            self._phase = None

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# --- the job, in its own process ----------------------------------------------------------------


def recording_warehouse(spark: Any, location: Any, record: Path, targets: dict[str, str]) -> Any:
    """The job's warehouse, saving each target MERGE's source rows and the target before it (timed, to be taken out)."""
    from spark_jobs.merge import MergeSpec
    from spark_jobs.warehouse import MergeCounts, Warehouse

    class RecordingWarehouse(Warehouse):
        def __init__(self) -> None:
            super().__init__(spark, location)
            self.saving_s = 0.0
            self.saving_cpu_s = 0.0
            self.day = ""
            self.merges: list[dict[str, Any]] = []

        def merge(self, table: str, source: Any, spec: MergeSpec) -> MergeCounts:
            if table not in targets:
                return super().merge(table, source, spec)
            begin, begin_cpu = time.perf_counter(), jvm_cpu(spark)
            saved = record / self.day / table
            shutil.rmtree(saved, ignore_errors=True)
            shutil.copytree(location.path(table), saved / "target")
            source().write.mode("overwrite").parquet(str(saved / "source.parquet"))
            self.saving_s += time.perf_counter() - begin
            self.saving_cpu_s += jvm_cpu(spark) - begin_cpu
            counts = super().merge(table, source, spec)
            self.merges.append(
                {
                    "day": self.day,
                    "table": table,
                    "dataset": targets[table],
                    "saved": str(saved),
                    "changed": counts.inserted + counts.updated + counts.deleted,
                }
            )
            return counts

    return RecordingWarehouse()


Call = tuple[str, float, float, str]


def jvm_cpu(spark: Any) -> float:
    """The driver JVM's CPU seconds so far (local mode: every executor thread is in it)."""
    return process_cpu(spark.sparkContext._gateway.proc.pid)


def run_tasks(
    warehouse: Any,
    manifest: Path,
    timings: dict[str, float],
    peaks: TreePeaks,
    calls: list[Call] | None = None,
    statements: dict[str, list[Call]] | None = None,
    cpu: dict[str, float] | None = None,
) -> None:
    """The four tasks of one sealed batch, as their entry points run them (arguments, context, body), timed.

    With `calls` (what profile_tasks.timed records), each task's Spark statements go to `statements`; with `cpu`,
    each task's JVM CPU seconds (which, unlike wall time, hardly move when others share the cores).
    """
    from spark_jobs import batch_derive, batch_merge, batch_stage, batch_validate
    from spark_jobs.batch import build_context, parse_batch_arguments

    bodies: dict[str, Callable[[Any], None]] = {
        "stage_members": batch_stage.stage_members,
        "validate": batch_validate.validate,
        "merge_targets": batch_merge.merge_targets,
        "derive_tables": batch_derive.derive_tables,
    }
    document = json.loads(manifest.read_text(encoding="utf-8"))
    argv = ["--manifest", str(manifest), "--pipeline", PIPELINE, "--batch-id", document["batch_id"], "--run-id", "1"]
    argv += ["--catalog", CATALOG, "--schema", SCHEMA, "--warehouse", str(warehouse.location.folder)]
    for task, body in bodies.items():
        saving = getattr(warehouse, "saving_s", 0.0)
        saving_cpu = getattr(warehouse, "saving_cpu_s", 0.0)
        jvm_before = jvm_cpu(warehouse.spark)
        with peaks.phase(task):
            begin = time.perf_counter()
            arguments = parse_batch_arguments(argv, task)
            body(build_context(warehouse, arguments, task, datetime.now(UTC), on_databricks=False))
            timings[task] = time.perf_counter() - begin - (getattr(warehouse, "saving_s", 0.0) - saving)
        if cpu is not None:
            cpu[task] = jvm_cpu(warehouse.spark) - jvm_before - (getattr(warehouse, "saving_cpu_s", 0.0) - saving_cpu)
        if calls is not None and statements is not None:
            statements[task] = sorted(calls, key=lambda call: -call[1])[:SHOWN_STATEMENTS]
            calls.clear()


def run_job(job: dict[str, Any]) -> None:
    """Warm up on the sample day, then run every day's four tasks into one warehouse; timings into job['out']."""
    from spark_jobs.warehouse import LocalWarehouse, Warehouse

    spark = bench_session(job["driver_memory"])
    jvm = spark.sparkContext._gateway.proc.pid
    contracts = load_contracts()
    targets = {contracts[name].target: name for name in MEMBERS}
    warm = Warehouse(spark, LocalWarehouse(Path(job["work"]) / "warmup-warehouse", CATALOG, SCHEMA))
    warm_peaks = TreePeaks()
    run_tasks(warm, seal(WARMUP, WARMUP_DAY, Path(job["work"]) / "warmup-sealed"), {}, warm_peaks)
    warm_peaks.stop()
    location = LocalWarehouse(Path(job["warehouse"]), CATALOG, SCHEMA)
    warehouse = recording_warehouse(spark, location, Path(job["record"]), targets)
    calls: list[Call] = []
    time_statements(calls, jvm)
    days: list[dict[str, Any]] = []
    for day in job["days"]:
        if job["stop_after"] and datetime.now(UTC) >= datetime.fromisoformat(job["stop_after"]) and days:
            print(f"job: {day} not started, past --stop-after {job['stop_after']}", file=sys.stderr, flush=True)
            break
        peaks = TreePeaks()
        timings: dict[str, float] = {}
        task_cpu: dict[str, float] = {}
        statements: dict[str, list[Call]] = {}
        warehouse.day = day
        saving = warehouse.saving_s
        cpu = process_cpu(jvm)
        calls.clear()
        run_tasks(warehouse, Path(job["manifests"][day]), timings, peaks, calls, statements, task_cpu)
        peaks.stop()
        days.append(
            {
                "day": day,
                "seconds": timings,
                "cpu_s": task_cpu,
                "peak_mib": peaks.peaks,
                "saving_s": warehouse.saving_s - saving,
                "jvm_cpu_s": process_cpu(jvm) - cpu,
                "statements": statements,
                "load": os.getloadavg()[0],
            }
        )
        print(f"job {day}: {json.dumps(timings)}", file=sys.stderr, flush=True)
        # After every day: a run stopped midway keeps the days done.
        Path(job["out"]).write_text(json.dumps({"days": days, "merges": warehouse.merges}), encoding="utf-8")
    spark.stop()


# --- the floor, in its own process --------------------------------------------------------------


def bare_stage(spark: Any, source: str, table: Path, multiline: bool) -> float:
    """One member file as Spark's CSV reader gives it (multi-line records where the job allows them too), written
    to a Delta table; seconds."""
    begin = time.perf_counter()
    reader = spark.read.option("header", "true").option("escape", '"').option("multiLine", str(multiline).lower())
    reader.csv(source).write.format("delta").mode("overwrite").save(str(table))
    return time.perf_counter() - begin


def bare_merge(spark: Any, merge: dict[str, Any], contracts: Any) -> tuple[float, int]:
    """A bare MERGE of the saved source into the saved target copy, with the job's clauses; seconds, rows changed."""
    from spark_jobs.columns import target_schema
    from spark_jobs.history import history_merge_v2
    from spark_jobs.merge import latest_wins_merge
    from spark_jobs.warehouse import CHANGE_FEED, merge_statement

    contract = contracts[merge["dataset"]]
    if contract.scd_type == 2:
        spec = history_merge_v2(contract)
    else:
        spec = latest_wins_merge(contract, target_schema(contract).fieldNames())
    saved = Path(merge["saved"])
    # The copy keeps the target's change data feed, which the job turns on for its counts: off for a bare MERGE.
    feed_off = f"TBLPROPERTIES ('{CHANGE_FEED}' = 'false')"
    spark.sql(f"ALTER TABLE delta.`{saved / 'target'}` SET {feed_off}").collect()
    spark.read.parquet(str(saved / "source.parquet")).createOrReplaceTempView("bare_source")
    begin = time.perf_counter()
    (metrics,) = spark.sql(merge_statement(f"delta.`{saved / 'target'}`", "bare_source", spec)).collect()
    seconds = time.perf_counter() - begin
    changed = metrics["num_inserted_rows"] + metrics["num_updated_rows"] + metrics["num_deleted_rows"]
    return seconds, int(changed)


def run_floor(floor: dict[str, Any]) -> None:
    """Per day: bare stage writes of the member files, then bare MERGEs of the job's merge sources; after a warm-up."""
    spark = bench_session(floor["driver_memory"])
    contracts = load_contracts()
    scratch = Path(floor["work"]) / "floor-scratch"
    merges: list[dict[str, Any]] = floor["merges"]
    # Warm-up: the same statements on the sample day's files, and each target's first MERGE with a few of its rows.
    for dataset in MEMBERS:
        multiline = contracts[dataset].multiline_records
        bare_stage(spark, str(WARMUP / file_name(dataset, WARMUP_DAY)), scratch / "warmup" / dataset, multiline)
    for merge in merges:
        if merge["day"] == floor["days"][0]:
            saved, warm = Path(merge["saved"]), Path(merge["saved"]).with_name(merge["table"] + "-warmup")
            shutil.rmtree(warm, ignore_errors=True)
            shutil.copytree(saved / "target", warm / "target")
            few = spark.read.parquet(str(saved / "source.parquet")).limit(WARMUP_ROWS)
            few.write.parquet(str(warm / "source.parquet"))
            bare_merge(spark, {**merge, "saved": str(warm)}, contracts)
            shutil.rmtree(warm, ignore_errors=True)
    days = []
    for day in floor["days"]:
        sealed = json.loads(Path(floor["manifests"][day]).read_text(encoding="utf-8"))
        stage: dict[str, float] = {}
        stage_cpu = jvm_cpu(spark)
        for member in sealed["members"]:
            table = scratch / day / member["dataset"]
            multiline = contracts[member["dataset"]].multiline_records
            stage[member["dataset"]] = bare_stage(spark, member["uri"], table, multiline)
        stage_cpu = jvm_cpu(spark) - stage_cpu
        for member in sealed["members"]:
            rows = spark.read.format("delta").load(str(scratch / day / member["dataset"])).count()
            if rows != member["expected_rows"]:
                raise RuntimeError(
                    f"the bare stage read {rows} rows of {member['uri']}, the trigger says {member['expected_rows']}"
                )
        merged: dict[str, float] = {}
        merge_cpu = jvm_cpu(spark)
        for merge in (m for m in merges if m["day"] == day):
            seconds, changed = bare_merge(spark, merge, contracts)
            if changed != merge["changed"]:
                raise RuntimeError(
                    f"the bare MERGE into {merge['table']} changed {changed} rows, the job {merge['changed']}"
                )
            merged[merge["table"]] = seconds
        merge_cpu = jvm_cpu(spark) - merge_cpu
        days.append(
            {
                "day": day,
                "stage": stage,
                "merge": merged,
                "stage_cpu_s": stage_cpu,
                "merge_cpu_s": merge_cpu,
                "load": os.getloadavg()[0],
            }
        )
        print(
            f"floor {day}: stage {sum(stage.values()):.1f} s, merge {sum(merged.values()):.1f} s",
            file=sys.stderr,
            flush=True,
        )
    Path(floor["out"]).write_text(json.dumps({"days": days}), encoding="utf-8")
    spark.stop()


# --- one scale, and the report ------------------------------------------------------------------


def generated(data: Path, days: list[str]) -> dict[str, dict[str, int]]:
    """The rows per member of the days already generated in `data` (a --work-dir's, same seed)."""
    try:
        flaws = json.loads((data / "flaws.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {day: flaws[day]["rows"] for day in days if day in flaws}


def measure(scale: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate the scale's days, run the job over them, then the floor; both in fresh processes."""
    volumes = Volumes.scaled(args.orders * scale)
    folder = work / f"scale-{scale}"
    data = folder / "data"
    days = [(FIRST_DAY + timedelta(days=offset)).isoformat() for offset in range(args.days)]
    generated_s: float | None = None
    if generated(data, days) != dict.fromkeys(days, volumes.__dict__):
        started = time.perf_counter()
        generate_volumes(FIRST_DAY, args.days, SEED, data, volumes)
        generated_s = time.perf_counter() - started
        rows = sum(volumes.__dict__.values())
        print(
            f"scale {scale}: generated {args.days} x {rows:,} rows in {generated_s:.0f} s", file=sys.stderr, flush=True
        )
    manifests = {day: str(seal(data, date.fromisoformat(day), folder / "sealed")) for day in days}
    resumed = args.resume and (folder / "job.json").exists()
    if not resumed:
        for stale in ("warehouse", "record", "floor-scratch", "warmup-warehouse"):
            shutil.rmtree(folder / stale, ignore_errors=True)
    driver_memory = args.driver_memory or ("4g" if scale * args.orders <= 100_000 else "10g")
    log = work / "bench.log"
    loads = [os.getloadavg()[0]]
    job: dict[str, Any] = {
        "work": str(folder),
        "warehouse": str(folder / "warehouse"),
        "record": str(folder / "record"),
        "days": days,
        "manifests": manifests,
        "driver_memory": driver_memory,
        "stop_after": args.stop_after,
        "out": str(folder / "job.json"),
    }
    if resumed:
        job_peak = json.loads((folder / "job-peak.json").read_text(encoding="utf-8"))
    else:
        job_peak = run_sampled([sys.executable, __file__, "--run-job", json.dumps(job)], log)
        (folder / "job-peak.json").write_text(json.dumps(job_peak), encoding="utf-8")
    job_result = json.loads(Path(job["out"]).read_text(encoding="utf-8"))
    floor: dict[str, Any] = {
        "work": str(folder),
        # The days the job did (all, unless --stop-after cut the run short).
        "days": [d["day"] for d in job_result["days"]],
        "manifests": manifests,
        "merges": job_result["merges"],
        "driver_memory": driver_memory,
        "out": str(folder / "floor.json"),
    }
    floor_peak = run_sampled([sys.executable, __file__, "--run-floor", json.dumps(floor)], log)
    floor_result = json.loads(Path(floor["out"]).read_text(encoding="utf-8"))
    loads += [d["load"] for d in job_result["days"]] + [d["load"] for d in floor_result["days"]]
    if not args.keep_data:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "scale": scale,
        "volumes": volumes.__dict__,
        "generated_s": generated_s,
        "driver_memory": driver_memory,
        "job": job_result,
        "floor": floor_result,
        "job_peak_mib": job_peak,
        "floor_peak_mib": floor_peak,
        "loads": loads,
        "days_requested": len(days),
        "warehouse_tables": str(LocalWarehouse(folder / "warehouse", CATALOG, SCHEMA).path("x").parent),
    }


def generated_in(seconds: float | None) -> str:
    return "(reused from --work-dir)" if seconds is None else f"{seconds:.0f} s for all days"


def render(results: list[dict[str, Any]]) -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    loads = [load for r in results for load in r["loads"]]
    lines = [
        "# Batch job benchmark (Delta Lake on Spark, local)",
        "",
        # A scale kept from an earlier run with the same --work-dir has its own command and commit.
        *(
            f"Command: `{command}` at {commit}  "
            for command, commit in dict.fromkeys(
                (r["command"], r.get("commit", "an unrecorded commit")) for r in results
            )
        ),
        f"Machine: {os.cpu_count()} cores, {memory_gib:.0f} GiB RAM, Python {platform.python_version()}; "
        f"1-minute load average {min(loads):.1f} to {max(loads):.1f}, at the start and after each day (shared); "
        f"run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        "| scale | day | stage_members s | validate s | merge_targets s | derive_tables s | job s "
        "| floor stage s | floor merge s | floor s | merge / floor merge | job / floor "
        "| job JVM CPU s | floor JVM CPU s | merge / floor merge, CPU | job / floor, CPU "
        "| peak MiB stage / validate / merge / derive | job peak MiB | floor peak MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        volumes = r["volumes"]
        label = f"{r['scale']}x ({volumes['orders']:,} orders)"
        for job_day, floor_day in zip(r["job"]["days"], r["floor"]["days"], strict=True):
            seconds = job_day["seconds"]
            job_s = sum(seconds.values())
            stage_floor = sum(floor_day["stage"].values())
            merge_floor = sum(floor_day["merge"].values())
            job_cpu = sum(job_day["cpu_s"].values())
            floor_cpu = floor_day["stage_cpu_s"] + floor_day["merge_cpu_s"]
            merge_cpu = job_day["cpu_s"]["merge_targets"] / floor_day["merge_cpu_s"]
            peaks = " / ".join(f"{job_day['peak_mib'].get(task, 0):,.0f}" for task in TASKS)
            lines.append(
                f"| {label} | {job_day['day']} | "
                + " | ".join(f"{seconds[task]:.1f}" for task in TASKS)
                + f" | {job_s:.1f} | {stage_floor:.1f} | {merge_floor:.1f} | {stage_floor + merge_floor:.1f} "
                f"| {seconds['merge_targets'] / merge_floor:.1f}x | {job_s / (stage_floor + merge_floor):.1f}x "
                f"| {job_cpu:.0f} | {floor_cpu:.0f} | {merge_cpu:.1f}x "
                f"| {job_cpu / floor_cpu:.1f}x "
                f"| {peaks} | {r['job_peak_mib']:,.0f} | {r['floor_peak_mib']:,.0f} |"
            )
    lines += [
        "",
        "Job = the four tasks the bundle's entry points run (arguments, context, body), in one fresh process",
        "per scale after a warm-up batch (the committed sample day), day after day into one warehouse: day 2",
        "merges into targets holding day 1. Floor = in a fresh process after the same warm-up: floor stage,",
        "a bare Delta write of each member file as Spark's CSV reader gives it (strings, no checks); floor",
        "merge, one bare `MERGE INTO` per target of exactly the rows the job's MERGE received (saved to",
        "Parquet outside the job's timing) into a copy of the target as it was before (change data feed",
        "off), with the job's clauses (all five targets are SCD2: insert new versions, re-bound or delete",
        "old ones). The goal:",
        "job / floor within 2x. Validation and derived tables have no bare counterpart; they count in the",
        "job's time only. JVM CPU = the driver JVM's CPU seconds (local mode: all of Spark), which hardly move",
        "when others share the cores: the ratio to trust on a loaded machine. Peak memory = memory of the",
        "process tree (a child forked without an exec counts only its private pages), sampled every",
        f"{SAMPLE_SECONDS} s; a task's peak includes what the tasks before it left in the JVM.",
        "",
        "## Rows a day",
        "",
        "| scale | orders | customers | products | inventory | shipping | generated in | driver memory |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        v = r["volumes"]
        lines.append(
            f"| {r['scale']}x | {v['orders']:,} | {v['customers']:,} | {v['products']:,} | {v['inventory']:,} "
            f"| {v['shipping']:,} | {generated_in(r['generated_s'])} | {r['driver_memory']} |"
        )
    for r in results:
        done = len(r["job"]["days"])
        if done < r["days_requested"]:
            lines.append(f"\n{r['scale']}x: {done} of {r['days_requested']} days done before --stop-after.")
    lines += ["", "## Per target, the last day", ""]
    for r in results:
        last = r["job"]["days"][-1]["day"]
        floor_merge = r["floor"]["days"][-1]["merge"]
        lines += [f"{r['scale']}x, {last}: bare MERGE seconds per target, rows the job's MERGE changed", ""]
        lines += ["| target | floor merge s | rows changed |", "|---|---:|---:|"]
        for merge in (m for m in r["job"]["merges"] if m["day"] == last):
            lines.append(f"| {merge['table']} | {floor_merge[merge['table']]:.1f} | {merge['changed']:,} |")
        lines.append("")
    lines += ["## Where the time goes, the last day", ""]
    for r in results:
        day = r["job"]["days"][-1]
        lines += [
            f"{r['scale']}x, {day['day']}: the slowest Spark statements of each task (wall s, JVM CPU s; "
            f"the JVM used {day['jvm_cpu_s']:.0f} s CPU in all that day)",
            "",
            "| task | wall s | JVM CPU s | call | statement |",
            "|---|---:|---:|---|---|",
        ]
        for task in TASKS:
            for name, wall, cpu, text in day["statements"][task]:
                # The tables' paths would fill the (cut) statement text: only their names are kept.
                shown = text.replace(f"delta.`{r['warehouse_tables']}/", "").replace("|", "\\|").replace("`", "'")
                lines.append(f"| {task} | {wall:.1f} | {cpu:.1f} | {name} | `{shown}` |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    children = {"--run-job": run_job, "--run-floor": run_floor}
    if len(sys.argv) == 3 and sys.argv[1] in children:
        children[sys.argv[1]](json.loads(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000, help="Orders a day at 1x (default: the issue's 100k).")
    parser.add_argument("--scales", default="1,10", help="Multiples of the 1x day, comma-separated (default: 1,10).")
    parser.add_argument("--days", type=int, default=2, help="Consecutive days per scale (default: 2).")
    parser.add_argument(
        "--quick", action="store_true", help="5,000 orders a day, 1x only (minutes: the warm-up batch dominates)."
    )
    parser.add_argument("--driver-memory", help="Spark driver memory (default: 4g up to 100k orders, else 10g).")
    parser.add_argument("--results", type=Path, help=f"Where to write the table (default: {RESULTS}).")
    parser.add_argument("--work-dir", type=Path, help="Keep data here (default: a temporary folder).")
    parser.add_argument(
        "--stop-after",
        type=lambda text: datetime.fromisoformat(text).astimezone(UTC).isoformat(),
        help="A time (ISO, e.g. 2026-11-30T10:30Z) after which the job starts no further day; the floor and the "
        "table cover the days done.",
    )
    parser.add_argument(
        "--resume", action="store_true", help="With --work-dir: reuse a scale's finished job run, redo only the floor."
    )
    parser.add_argument("--keep-data", action="store_true", help="Keep each scale's files and tables.")
    args = parser.parse_args()
    if args.quick:
        args.orders, args.scales = 5_000, "1"
    if args.days < 1 or args.orders < 1:
        parser.error("--days and --orders must be at least 1")
    results_path = args.results or (RESULTS.with_name("batch-quick.md") if args.quick else RESULTS)
    scales = [int(s) for s in args.scales.split(",") if s]
    # Read before the run: the table says what was measured even if the tree changes meanwhile.
    commit = checkout()
    started = time.perf_counter()
    with work_folder(args.work_dir) as work:
        # Scales measured by earlier runs with the same --work-dir stay in the table (each with its command).
        saved = work / "results.json"
        results = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else []
        for scale in scales:
            command = shlex.join(["bench/bench_batch.py", *sys.argv[1:]])
            result = {**measure(scale, args, work), "command": command, "commit": commit}
            results = sorted([r for r in results if r["scale"] != scale] + [result], key=lambda r: r["scale"])
            # Written after every scale: a run cut short keeps what finished.
            saved.write_text(json.dumps(results), encoding="utf-8")
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(render(results), encoding="utf-8")
    print(render(results))
    print(f"wrote {results_path} after {time.perf_counter() - started:.0f} s in all", file=sys.stderr)
    return 0


@contextmanager
def work_folder(kept: Path | None) -> Iterator[Path]:
    """The --work-dir, kept; or a temporary folder, removed after."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="filegate-bench-batch-") as temporary:
        yield Path(temporary)


if __name__ == "__main__":
    sys.exit(main())
