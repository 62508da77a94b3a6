"""The demo's e-commerce scene: two business days of a pipeline batch, piece by piece, through the function and
the batch job.

Day 1 arrives trigger first (the batch waits for its members, then seals and runs). Day 2 arrives members
first, with a customers file whose header is wrong: the batch is blocked until the corrected file comes;
after the seal a corrected shipping file arrives late and is held (`late_member = "hold"`). The report then
shows what the batch job made of it: `filegate batches`, the validation results, the processing log per
task, the analytics tables when this release builds them, and one customer's SCD2 history.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from filegate.batches import BLOCKED, LATE_MEMBER, MEMBER_ARCHIVED, SEALED, WAITING
from filegate.batches_command import batch_rows as batch_rows_of
from filegate.batches_command import format_rows
from filegate.status import recent_runs, render_runs
from filegate.tables import (
    ANALYTICS_SUMMARY,
    AS_OF_DATE,
    EFFECTIVE_FROM,
    EFFECTIVE_TO,
    IS_CURRENT,
    PROCESSING_LOG,
    SEGMENT_ANALYSIS,
    SOURCE_FILE,
    VALIDATION_RESULTS,
)
from local_world.demo._flow import FileResult, PlannedUpload, Progress, gate_of, upload_and_deliver
from local_world.demo._report import problems_of, read_table, render_files, render_rows, run_problems
from local_world.demo._world import DemoError, LocalWorld

if TYPE_CHECKING:
    from databricks.sdk.service.jobs import Run

    from filegate.batches_command import BatchRow

PIPELINE = "ecommerce"
SAMPLES_FOLDER = "ecommerce"
# The customer whose history the report shows: the day-2 file moves them to another tier (a new version)
# and the generator plants it (flaws.json, `tier_change`).
HISTORY_FLAW = "tier_change"
# Analytics (issue 17) are built by the batch job's last task; the report shows these two when they exist.
# The two daily series the pipeline's derive_tables task builds, and the columns a reader looks at first.
ANALYTICS_SHOWN = {
    ANALYTICS_SUMMARY: (
        AS_OF_DATE, "total_orders", "total_revenue", "avg_order_value", "gross_margin_pct", "total_customers",
        "active_customers_90d", "out_of_stock_products", "non_base_currency_orders", "orphan_orders",
        "data_quality_score",
    ),
    SEGMENT_ANALYSIS: (
        AS_OF_DATE, "customer_segment", "customers", "customer_share", "revenue", "revenue_share", "avg_clv",
        "at_risk_share",
    ),
}  # fmt: skip
LATE_FOLDER = "late"
# A task's log row says it did its work, or that there was none for it (derive_tables with no tables declared).
DONE = ("SUCCEEDED", "SKIPPED")


@dataclass(frozen=True)
class BatchScene:
    """The e-commerce scene's inputs: the day folders' files in upload order, and the customer to follow."""

    plan: list[PlannedUpload]
    days: tuple[date, ...]
    customer: str


def _day_files(folder: Path, day: date) -> dict[str, Path]:
    stamp = day.strftime("%Y_%m_%d")
    return {path.name.rsplit(f"_{stamp}", 1)[0]: path for path in sorted(folder.glob(f"*_{stamp}.*"))}


def late_correction(original: Path, folder: Path) -> Path:
    """A corrected version of a shipping file, the same size as the one the trigger lists (so the batch would
    pick it): the first shipment's estimated delivery moves a day and its update time is later."""
    lines = original.read_text(encoding="utf-8").splitlines(keepends=True)
    header = lines[0].rstrip("\r\n").split(",")
    fields = lines[1].rstrip("\r\n").split(",")
    estimated, updated = header.index("estimated_delivery"), header.index("updated_at")
    moved = date.fromisoformat(fields[estimated]).toordinal() + 1
    fields[estimated] = date.fromordinal(moved).isoformat()
    fields[updated] = f"{fields[updated][:10]}T23:59:59Z"
    lines[1] = ",".join(fields) + lines[1][len(lines[1].rstrip("\r\n")) :]
    folder.mkdir(parents=True, exist_ok=True)
    late = folder / original.name
    late.write_text("".join(lines), encoding="utf-8")
    if late.stat().st_size != original.stat().st_size:
        raise DemoError(f"the late correction of {original.name} must keep its size to be chosen by the batch")
    return late


def plan_batches(samples: Path, late_folder: Path) -> BatchScene:
    """The two sample days in the order that shows every batch outcome, each upload with the outcome it must get."""
    folder = samples / SAMPLES_FOLDER
    triggers = sorted(folder.glob("trigger_*.json"))
    if len(triggers) < 2:
        raise DemoError(f"the e-commerce scene needs two days of samples (trigger_*.json) in {folder}")
    days = tuple(date.fromisoformat(json.loads(path.read_text())["batch_date"]) for path in triggers[:2])
    first, second = _day_files(folder, days[0]), _day_files(folder, days[1])
    bad = _day_files(folder / "bad", days[1]).get("customers")
    if bad is None:
        raise DemoError(f"the e-commerce scene needs a bad customers file for {days[1]} in {folder / 'bad'}")
    members = [name for name in first if name != "trigger"]
    last = members[-1]
    plan = [PlannedUpload(first["trigger"], WAITING, "day 1: the trigger first")]
    plan += [PlannedUpload(first[name], WAITING) for name in members[:-1]]
    plan.append(PlannedUpload(first[last], SEALED, "day 1: the last member"))
    others = [name for name in members if name != "customers"]
    plan += [PlannedUpload(second[name], MEMBER_ARCHIVED, "day 2: before its trigger") for name in others]
    plan.append(PlannedUpload(bad, BLOCKED, "bad: wrong header"))
    plan.append(PlannedUpload(second["trigger"], BLOCKED))
    plan.append(PlannedUpload(second["customers"], SEALED, "corrected"))
    plan.append(PlannedUpload(late_correction(second["shipping"], late_folder), LATE_MEMBER, "late correction"))
    flaws = json.loads((folder / "flaws.json").read_text())
    customer = flaws[days[1].isoformat()]["planted"][HISTORY_FLAW][0]
    return BatchScene(plan, days, customer)


# -- the scene ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchUploads:
    """What the function did with the scene's uploads, and the batch run each sealed day started."""

    results: list[FileResult]
    names: dict[int, str]


def upload_batches(world: LocalWorld, scene: BatchScene, progress: Progress) -> BatchUploads:
    """Upload the scene; the batch runs it starts are awaited by the caller (beside any other job's runs)."""
    if world.batch_job is None:
        raise DemoError("the bundle has no batch job (filegate-batch): the e-commerce scene cannot run")
    progress(f"E-commerce scene: {len(scene.plan)} uploads over two business days, one batch run per sealed day")
    results = upload_and_deliver(world, scene.plan, progress)
    names = {
        r.outcome.run_id: f"batch {r.outcome.business_date}"
        for r in results
        if r.outcome and r.outcome.status == SEALED and r.outcome.run_id is not None
    }
    return BatchUploads(results, names)


def report_batches(
    world: LocalWorld, scene: BatchScene, uploads: BatchUploads, runs: dict[int, Run], out: TextIO
) -> list[str]:
    """Print the scene's report once its runs ended; the problems found (empty: as expected)."""
    rows = batch_rows(world)
    print_batch_report(world, uploads.results, rows, scene, out)
    return (
        problems_of(uploads.results)
        + _late_problems(uploads.results)
        + run_problems(world, runs, uploads.names)
        + batch_problems(world, rows, runs, scene)
    )


def batch_rows(world: LocalWorld) -> list[BatchRow]:
    """What `filegate batches` says, asked the way the command asks (archive listing, then runs/get)."""
    rows, unanswered = batch_rows_of(gate_of(world), PIPELINE)
    if unanswered is not None:
        raise unanswered
    return rows


def _late_problems(results: Sequence[FileResult]) -> list[str]:
    """The late member must be held: the batch's seal and run stay those of its sealing upload."""
    sealed = {r.outcome.business_date: r.outcome for r in results if r.outcome and r.outcome.status == SEALED}
    problems = []
    for result in results:
        outcome = result.outcome
        if outcome is None or outcome.status != LATE_MEMBER:
            continue
        seal = sealed.get(outcome.business_date)
        if seal is None or (outcome.revision, outcome.run_id) != (seal.revision, seal.run_id):
            problems.append(f"  - {result.upload.path.name} (late): the sealed batch changed; it should be held")
    return problems


def batch_problems(world: LocalWorld, rows: Sequence[BatchRow], runs: dict[int, Run], scene: BatchScene) -> list[str]:
    """What the batch job must have left: each day succeeded with its results, its log and the history followed."""
    problems = []
    states = {row.business_date: row.state for row in rows}
    for day in scene.days:
        if states.get(day.isoformat()) != "succeeded":
            problems.append(f"  - batch {day}: `filegate batches` says {states.get(day.isoformat(), 'nothing')}")
    results = read_table(world.table(VALIDATION_RESULTS)) or []
    batches = {row["business_date"] for row in results if row.get("level") == "batch"}
    if batches != set(scene.days):
        problems.append(f"  - {VALIDATION_RESULTS}: batch rows for {sorted(map(str, batches))}, expected both days")
    log = read_table(world.table(PROCESSING_LOG)) or []
    tasks = {task.task_key for task in world.batch_job.tasks} if world.batch_job else set()
    for run_id in runs:
        logged = {row["task"] for row in log if row.get("run_id") == run_id and row.get("status") in DONE}
        if not tasks <= logged:
            problems.append(f"  - run {run_id}: {PROCESSING_LOG} lacks {', '.join(sorted(tasks - logged))}")
    for table in ANALYTICS_SHOWN:
        built = {row[AS_OF_DATE] for row in read_table(world.table(table)) or []}
        if built != set(scene.days):
            problems.append(f"  - {table}: slices for {sorted(map(str, built))}, expected both days")
    versions = customer_history(world, scene.customer)
    if len(versions) < 2 or sum(1 for v in versions if v.get(IS_CURRENT)) != 1:
        problems.append(f"  - {scene.customer}: expected two versions, one current; found {len(versions)}")
    return problems


# -- the report --------------------------------------------------------------------------------------------


def customer_history(world: LocalWorld, customer: str) -> list[dict[str, Any]]:
    """One customer's versions in the customers target, oldest first."""
    from filegate.contracts import load_contracts

    contract = load_contracts()["customers"]
    rows = read_table(world.table(contract.target)) or []
    key = contract.keys[0]
    versions = [row for row in rows if row.get(key) == customer]
    return sorted(versions, key=lambda row: str(row.get(EFFECTIVE_FROM)))


def render_validation(world: LocalWorld) -> str:
    rows = read_table(world.table(VALIDATION_RESULTS))
    if not rows:
        return "  (no validation results)"
    level_order = {"batch": 0, "dataset": 1, "rule": 2}
    rows.sort(
        key=lambda r: (
            str(r.get("business_date")),
            level_order.get(str(r.get("level")), 3),
            str(r.get("dataset")),
            -(r.get("rows_failed") or 0),
            str(r.get("rule")),
        )
    )
    shown = [
        {
            **row,
            "dataset": row.get("dataset") or "(batch)",
            "score": "" if row.get("score") is None else f"{row['score']:.1f}",
        }
        for row in rows
        if row.get("level") != "rule" or row.get("rows_failed")
    ]
    passed = len(rows) - len(shown)
    columns = (
        "business_date",
        "level",
        "dataset",
        "rule",
        "severity",
        "outcome",
        "rows_evaluated",
        "rows_failed",
        "score",
    )
    text = render_rows(shown, columns, limit=len(shown))
    return text + f"\n  ({passed} more rules passed with no failing row)"


def render_batch_log(world: LocalWorld, run_ids: set[int]) -> str:
    rows = [row for row in read_table(world.table(PROCESSING_LOG)) or [] if row.get("run_id") in run_ids]
    if not rows:
        return "  (empty)"
    order = {task.task_key: index for index, task in enumerate(world.batch_job.tasks if world.batch_job else ())}
    rows.sort(
        key=lambda r: (
            r.get("run_id"),
            order.get(str(r.get("task")), 9),
            str(r.get("dataset") or ""),
            str(r.get("table_name") or ""),
        )
    )
    shown = [{**row, "what": row.get("dataset") or row.get("table_name") or ""} for row in rows]
    columns = (
        "run_id",
        "task",
        "what",
        "status",
        "rows_read",
        "rows_rejected",
        "rows_quarantined",
        "rows_superseded",
        "rows_inserted",
        "rows_updated",
        "rows_unchanged",
        "rows_deleted",
    )
    return render_rows(shown, columns, limit=len(shown))


def render_analytics(world: LocalWorld) -> str:
    """The daily series the batch job derived (analytics_summary, segment_analysis), oldest day first."""
    parts = []
    for table, columns in ANALYTICS_SHOWN.items():
        rows = sorted(read_table(world.table(table)) or [], key=lambda row: tuple(str(row.get(c)) for c in columns[:2]))
        parts.append(f"\n{table}:\n{render_rows(rows, list(columns), limit=len(rows)) if rows else '  (not built)'}")
    return "".join(parts)


def render_customer(world: LocalWorld, customer: str) -> str:
    versions = customer_history(world, customer)
    if not versions:
        return "  (no versions)"
    shown = [{**row, SOURCE_FILE: str(row.get(SOURCE_FILE, "")).rsplit("/", 1)[-1]} for row in versions]
    columns = ("customer_id", "customer_tier", "city", EFFECTIVE_FROM, EFFECTIVE_TO, IS_CURRENT, SOURCE_FILE)
    return render_rows(shown, [c for c in columns if c in versions[0] or c == SOURCE_FILE])


def print_batch_report(
    world: LocalWorld, results: Sequence[FileResult], rows: Sequence[BatchRow], scene: BatchScene, out: TextIO
) -> None:
    """The scene's files, `filegate batches`, the batch runs, and what the batch job wrote."""
    print(file=out)
    print("E-commerce files (what the function did with each upload):", file=out)
    print(render_files(results), file=out)
    print("\nfilegate batches:", file=out)
    print(format_rows(list(rows)), file=out)
    if world.batch_job is not None:
        run_ids = {row.run_id for row in rows if row.run_id is not None}
        listed = recent_runs(world.client, world.batch_job.job_id, max(len(run_ids), 1))
        print(file=out)
        print(render_runs(listed, world.batch_job.name, world.batch_job.job_id, world.jobs.url), file=out)
        print(f"\nValidation results ({VALIDATION_RESULTS}: per batch, per dataset, and each failing rule):", file=out)
        print(render_validation(world), file=out)
        print(f"\nProcessing log of the batch runs ({PROCESSING_LOG}, per task):", file=out)
        print(render_batch_log(world, run_ids), file=out)
    print(render_analytics(world), file=out)
    print(f"\nHistory of customer {scene.customer} (SCD type 2):", file=out)
    print(render_customer(world, scene.customer), file=out)
