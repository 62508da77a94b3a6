"""The demo's report: what happened to each file and run, the target table, the rejects and the processing log."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from filegate.ingest import ARCHIVED
from filegate.jobs import run_state
from filegate.status import (
    ended_in_error,
    failure_lines,
    last_attempts,
    recent_runs,
    render_runs,
    render_table,
    run_message,
    short_source,
)
from filegate.tables import IS_CURRENT, PROCESSING_LOG, RAW_LINE, REASON, SOURCE_FILE, rejects_table
from local_world.demo._flow import FileResult
from local_world.demo._world import LocalWorld

# The ingest job's merging task (infra/databricks/resources) and the status its log row ends with.
TARGET_TASK = "target_load"
SUCCEEDED = "SUCCEEDED"

if TYPE_CHECKING:
    from databricks.sdk.service.jobs import Run

    from filegate.contracts import Contract


log = logging.getLogger("local_world.demo")


# How many of a dataset's columns the target table shows (keys, categories and sequence first).
TARGET_SHOWN_COLUMNS = 6
TABLE_ROWS = 12


# -- the report --------------------------------------------------------------------------------------------


def render_files(results: Sequence[FileResult]) -> str:
    """Each upload's outcome, run and where it went, its reasons below it."""
    rows = []
    for result in results:
        outcome = result.outcome
        status = outcome.status if outcome else "not delivered"
        where = ""
        if outcome is not None:
            where = outcome.archived_path or outcome.rejected_path or ""
        rows.append([result.upload.path.name, status, outcome.run_id if outcome else "", where])
        for reason in outcome.reasons if outcome else ():
            rows.append(["", "", "", f"  - {reason}"])
    # The reasons last: a long one (a late member's is 200 characters) would push a column after it, and
    # every row with it, far past the terminal's width.
    return render_table(("FILE", "OUTCOME", "RUN", "WHERE / WHY"), rows, indent="  ")


def _table_folder(warehouse: Path, table: str) -> Path:
    from local_world.jobs_api import local_table

    return local_table(warehouse, table)


def read_table(path: Path) -> list[dict[str, Any]] | None:
    """A Delta table's rows with delta-rs; None when the table does not exist.

    Through delta-rs' query engine: it applies the deletion vectors Delta Lake on Spark writes (its
    pyarrow dataset refuses tables that have them).
    """
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    if not DeltaTable.is_deltatable(str(path)):
        return None
    batches = QueryBuilder().register("t", DeltaTable(str(path))).execute("SELECT * FROM t").read_all()
    rows: list[dict[str, Any]] = pa.table(batches).to_pylist()
    return rows


def _cell(value: Any, width: int = 60) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds").replace("+00:00", "")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")  # shares and scores: four decimals say enough
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], limit: int = TABLE_ROWS) -> str:
    shown = [[_cell(row.get(column)) for column in columns] for row in rows[:limit]]
    text = render_table([c.upper() for c in columns], shown, indent="  ")
    if len(rows) > limit:
        text += f"\n  ... {len(rows) - limit} more rows"
    return text


def target_columns(contract: Contract, limit: int = TARGET_SHOWN_COLUMNS) -> list[str]:
    """The columns worth showing: keys, the sequence and category columns, then required ones, in contract order."""
    chosen = list(contract.keys)
    wanted = [c.name for c in contract.columns if c.allowed or c.name == contract.sequence_by]
    wanted += [c.name for c in contract.columns if not c.nullable]
    for name in wanted:
        if name not in chosen and len(chosen) < limit:
            chosen.append(name)
    order = {name: index for index, name in enumerate(contract.column_names)}
    return sorted(chosen, key=lambda name: (name not in contract.keys, order.get(name, len(order))))


def summary_column(contract: Contract) -> str | None:
    """The column whose values summarise the table: the first category column that is not a key."""
    return next((c.name for c in contract.columns if c.allowed and c.name not in contract.keys), None)


def render_target(warehouse: Path, contract: Contract) -> str:
    rows = read_table(_table_folder(warehouse, contract.name))
    if rows is None:
        return f"  (no table {contract.name})"
    keys = contract.keys
    rows.sort(key=lambda row: tuple(str(row.get(key)) for key in keys))
    # Under SCD type 2 the table keeps history; the summary counts the current version of each key.
    current = [row for row in rows if row.get(IS_CURRENT, True) is not False]
    head = f"  {len(rows)} rows" + (f", {len(current)} current" if len(current) != len(rows) else "")
    column = summary_column(contract)
    if column is not None:
        counts: dict[str, int] = {}
        for row in current:
            counts[str(row.get(column))] = counts.get(str(row.get(column)), 0) + 1
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        head += f", latest {column} per {', '.join(keys)}: " + ", ".join(f"{value} {n}" for value, n in ranked)
    columns = [c for c in target_columns(contract) if not rows or c in rows[0]] + [SOURCE_FILE]
    shown = [{**row, SOURCE_FILE: short_source(str(row.get(SOURCE_FILE, ""))).rsplit("/", 1)[-1]} for row in rows]
    return f"{head}\n{render_rows(shown, columns)}"


def render_rejects(warehouse: Path, dataset: str) -> str:
    rows = read_table(_table_folder(warehouse, rejects_table(dataset)))
    if not rows:
        return "  (none: every row of the loaded files passed the contract)"
    shown = [{**row, "file": str(row.get(SOURCE_FILE, "")).rsplit("/", 1)[-1]} for row in rows]
    shown.sort(key=lambda row: (row["file"], str(row.get("reason"))))
    return f"  {len(rows)} rows\n{render_rows(shown, ('file', REASON, RAW_LINE))}"


def render_history(path: Path) -> str:
    """Which engine wrote the table's commits, and what they were (`DESCRIBE HISTORY`, read by delta-rs)."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return ""  # render_target says so
    operations: dict[tuple[str, str], int] = {}
    for commit in DeltaTable(str(path)).history():
        key = (str(commit.get("operation")), str(commit.get("engineInfo", "")))
        operations[key] = operations.get(key, 0) + 1
    return "\n".join(
        f"  {count} x {operation} by {engine}" for (operation, engine), count in sorted(operations.items())
    )


def render_processing_log(warehouse: Path, run_ids: set[int]) -> str:
    """The log rows of these runs: the table also holds the batch job's, which its own section shows."""
    rows = [row for row in read_table(_table_folder(warehouse, PROCESSING_LOG)) or [] if row.get("run_id") in run_ids]
    if not rows:
        return "  (empty)"
    rows.sort(key=lambda row: (str(row.get("ended_at")), str(row.get("batch_id"))))
    shown = [{**row, "file": str(row.get("source_file", "")).rsplit("/", 1)[-1]} for row in rows]
    columns = (
        "file",
        "task",
        "status",
        "rows_read",
        "rows_rejected",
        "rows_superseded",
        "rows_inserted",
        "rows_updated",
        "rows_unchanged",
    )
    return render_rows(shown, columns, limit=50)


def problems_of(results: Sequence[FileResult]) -> list[str]:
    """Every file whose outcome is not what the demo expects."""
    problems = []
    for result in results:
        outcome = result.outcome
        actual = outcome.status if outcome else "not delivered"
        if actual != result.upload.expected:
            problems.append(f"  - {result.upload.path.name}: expected {result.upload.expected}, got {actual}")
    return problems


def table_problems(warehouse: Path, results: Sequence[FileResult], succeeded: set[int]) -> list[str]:
    """What the ingest runs that succeeded must have left, beside their state: a SUCCEEDED target_load row per
    archived file that read every row of it; and, for an SCD1 target without deletes (one row per key), exactly
    the rows those runs logged as inserted. A run that ended SUCCESS without loading anything, or loaded what
    the log does not say, is a problem. Failed runs are `run_problems`'."""
    from filegate.contracts import load_contracts

    contracts = load_contracts()
    log = read_table(_table_folder(warehouse, PROCESSING_LOG)) or []
    problems: list[str] = []
    inserted: dict[str, dict[int, int]] = {}
    unsure: set[str] = set()
    for result in results:
        outcome = result.outcome
        # Only a file's own new run: an identical or duplicate outcome names an earlier file's, a member its batch's.
        if outcome is None or outcome.status != ARCHIVED or outcome.pipeline or outcome.run_id not in succeeded:
            continue
        if outcome.run_id is None or outcome.dataset not in contracts:
            continue
        name, dataset, run_id = result.upload.path.name, str(outcome.dataset), outcome.run_id
        loaded = [
            row
            for row in log
            if row.get("run_id") == run_id and row.get("task") == TARGET_TASK and row.get("status") == SUCCEEDED
        ]
        if len(loaded) != 1:
            problems.append(
                f"  - {name}: {PROCESSING_LOG} holds {len(loaded)} {SUCCEEDED} {TARGET_TASK} rows of run {run_id}, "
                "expected 1"
            )
            unsure.add(dataset)  # its inserts are unknown: the target's count says nothing more
            continue
        lines = [line for line in result.upload.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if loaded[0].get("rows_read") != len(lines) - 1:
            problems.append(f"  - {name}: {loaded[0].get('rows_read')} rows read, the file has {len(lines) - 1}")
        inserted.setdefault(dataset, {})[run_id] = int(loaded[0].get("rows_inserted") or 0)
    for dataset, by_run in sorted(inserted.items()):
        contract = contracts[dataset]
        if dataset in unsure or contract.scd_type != 1 or contract.delete_when:
            continue
        count = sum(by_run.values())
        target = read_table(_table_folder(warehouse, contract.target))
        if target is None:
            problems.append(f"  - {dataset}: no target table, though its runs logged {count} rows inserted")
        elif len(target) != count:
            problems.append(f"  - {dataset}: {len(target)} rows in the target, its runs logged {count} inserted")
    return problems


def run_problems(world: LocalWorld, runs: dict[int, Run], names: dict[int, str]) -> list[str]:
    """Every run that did not succeed, with why each failed task failed and where its whole log is."""
    lines = []
    for run_id, run in sorted(runs.items()):
        if run_state(run) == "SUCCESS":
            continue
        lines.append(f"  - run {run_id} ({names.get(run_id, '?')}) ended {run_state(run)}")
        logs = world.jobs.log_files(run_id)
        # Each task's last attempt: a failure its retry made good is no problem of the run.
        failed = [task for task in last_attempts(run.tasks or []) if ended_in_error(task)]
        for task in failed:
            lines += failure_lines(world.client, task, indent="      ")
            log_file = logs.get(task.run_id) if task.run_id is not None else None
            if log_file is not None:
                lines.append(f"      log: {_relative(log_file)}")
        if not failed and run_message(run):
            lines.append(f"      {run_message(run)}")
    return lines


def render_revisit(state: Path, url: str) -> str:
    """How to see the runs again once the demo (and its Jobs API) has stopped."""
    jobs, warehouse = _relative(state / "jobs"), _relative(state / "warehouse")
    port = url.rsplit(":", 1)[-1]
    return "\n".join(
        [
            "The run pages and `filegate status` need the local Jobs API, which stopped with the demo. To look again:",
            "  make demo ARGS=--keep-serving    the demo again, its run pages and Azurite up until Ctrl-C (it prints",
            "                                   the settings for `filegate archived`, `rejected`, `batches` too)",
            f"  .venv/bin/python -m local_world jobs-api --state-dir {jobs} --warehouse {warehouse} --port {port}",
            "                                   these runs served again (the run page URLs above work again), then:",
            f"  DATABRICKS_HOST={url} DATABRICKS_TOKEN=local .venv/bin/filegate status [RUN_ID]",
            "  ... .venv/bin/filegate status --batch             the batch job's runs",
        ]
    )


def render_serving(url: str, storage: str, archive_storage: str) -> str:
    """What stays up with --keep-serving, and the settings that reach it from another terminal."""
    settings = {
        "FILEGATE_AZURE_STORAGE": storage,
        "FILEGATE_AZURE_ARCHIVE_STORAGE": archive_storage,
        "DATABRICKS_HOST": url,
        "DATABRICKS_TOKEN": "local",
    }
    return "\n".join(
        [
            f"Run pages ({url}/) and Azurite stay up; in another terminal, these settings reach them:",
            "  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in settings.items()),
            "  .venv/bin/filegate status                         the ingest job's runs",
            "  .venv/bin/filegate status --batch                 the batch job's runs",
            "  .venv/bin/filegate archived | rejected | reconcile | batches    the files and batches in Azurite",
            # The demo's watcher stopped with its uploads: a file dropped into landing now waits for one.
            "  .venv/bin/python -m local_world watch             delivers what you upload to landing now, "
            "to the function's core and these runs",
            "Press Ctrl-C to stop.",
        ]
    )


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def print_tables(world: LocalWorld, results: Sequence[FileResult], run_count: int, out: TextIO) -> None:
    """What the demo did: each file's outcome, the runs, and the tables the runs loaded."""
    from filegate.contracts import load_contracts

    print(file=out)
    print("Files (what the function did with each upload):", file=out)
    print(render_files(results), file=out)
    print(file=out)
    listed = recent_runs(world.client, world.job.job_id, run_count or 1)
    print(render_runs(listed, world.job.name, world.job.job_id, world.jobs.url), file=out)
    contracts = load_contracts()
    datasets = sorted({name for r in results if r.outcome and (name := r.outcome.dataset) and name in contracts})
    for dataset in datasets:
        folder = _table_folder(world.warehouse, dataset)
        print(f"\nTarget table {dataset} ({_relative(folder)}):", file=out)
        if history := render_history(folder):
            print(history, file=out)
        print(render_target(world.warehouse, contracts[dataset]), file=out)
        print(f"\nRejected rows ({rejects_table(dataset)}):", file=out)
        print(render_rejects(world.warehouse, dataset), file=out)
    print(f"\nProcessing log ({PROCESSING_LOG}, these runs):", file=out)
    run_ids = {outcome.run_id for r in results if (outcome := r.outcome) and outcome.run_id is not None}
    print(render_processing_log(world.warehouse, run_ids), file=out)
