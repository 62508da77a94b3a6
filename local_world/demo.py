"""`python -m local_world demo` (what `make demo` runs): the whole flow on this machine, started and stopped for you.

Azurite and the local Jobs API start on free ports; the sample days are uploaded into the landing
container in a realistic order (one day arrives late, one file is bad); the watcher delivers the
BlobCreated events to the function's core, which validates, archives or rejects, and starts a run
per file; the runs load the Delta tables on local Spark (each task its own process, all of them on
one Spark Connect server started for the first task). At the end it prints what happened to each
file, each run, the target table, the rejects and the processing log; when something failed, each
failed task's error and log. One demo at a time per state folder: it is locked while a demo runs.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from filegate import exits
from filegate.errors import FilegateError
from filegate.ingest import ARCHIVED, REJECTED, Outcome
from filegate.settings import Location, Settings
from filegate.status import (
    FAILED_STATES,
    duration_seconds,
    failure_lines,
    format_duration,
    recent_runs,
    render_runs,
    render_table,
    run_state,
    short_source,
)
from local_world.emulators import run_azurite, stop_leftovers
from local_world.watch import AzuriteSource, DeliveryReport, Event, RetryPolicy, Watcher, deliver_in_process

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import Run

    from filegate.contracts import Contract
    from filegate.ingest import Gate
    from local_world.jobs_api import JobSpec, LocalJobsServer

log = logging.getLogger("local_world.demo")

LOCAL_TOKEN = "local-demo-token"  # noqa: S105 - the local Jobs API accepts any token
DEMO_SETTINGS = Settings(landing=Location("landing"), archive=Location("archive"), rejected=Location("rejected"))
# What the demo owns under its state folder; only these are removed when it starts again.
_STATE_PARTS = ("azurite", "jobs", "warehouse", "watch", "demo.log")
# Names the Spark job gives its tables and columns (spark_jobs.processing_log.TABLE, spark_jobs.columns):
# read here with delta-rs, because the function's package must not import pyspark.
PROCESSING_LOG = "processing_log"
IS_CURRENT = "is_current"
SOURCE_FILE_COLUMN = "_source_file"
# How many of a dataset's columns the target table shows (keys, categories and sequence first).
TARGET_SHOWN_COLUMNS = 6
TABLE_ROWS = 12
DEFAULT_TIMEOUT = 900.0


class DemoError(FilegateError):
    """Something the demo needs is missing or did not start."""


@dataclass(frozen=True)
class PlannedUpload:
    """One sample file, in the order it is uploaded, with what should happen to it."""

    path: Path
    expected: str
    note: str = ""


@dataclass
class FileResult:
    """What the function did with one uploaded file."""

    upload: PlannedUpload
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def outcome(self) -> Outcome | None:
        return self.outcomes[-1] if self.outcomes else None


# -- the local world ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalWorld:
    """Everything the demo started: storage, the Jobs API, the function's core, a workspace client."""

    connection_string: str
    jobs: LocalJobsServer
    job: JobSpec
    client: WorkspaceClient
    settings: Settings
    warehouse: Path
    state: Path


@contextmanager
def local_world(
    state: Path,
    root: Path,
    bundle: Path | None = None,
    *,
    spark: str = "connect",
    notify: Callable[[str], None] | None = None,
) -> Iterator[LocalWorld]:
    """Start Azurite and the local Jobs API with the bundle's job, create the containers; stop all on exit."""
    from filegate.azure_storage import AzureBlobStore
    from filegate.jobs import create_workspace_client
    from local_world.jobs_api import LocalJobsServer, SourceStorage, default_bundle, load_bundle, local_variables

    bundle = bundle or default_bundle()
    if not bundle.is_file():
        raise DemoError(f"the job bundle {bundle} is missing")
    warehouse = state / "warehouse"
    warehouse.mkdir(parents=True, exist_ok=True)
    jobs = load_bundle(bundle, local_variables())
    # The function triggers the bundle's (first) job, whatever it is called.
    job = jobs[0]
    with run_azurite(root, state / "azurite") as azurite:
        connection = azurite.connection_string
        settings = replace(DEMO_SETTINGS, azure_storage=connection, job_id=job.job_id, job_name=job.name)
        AzureBlobStore.from_setting(connection).create_containers(
            settings.landing.container, settings.archive.container, settings.rejected.container
        )
        server = LocalJobsServer(
            jobs,
            state / "jobs",
            storage=SourceStorage(connection),
            workdir=root,
            spark=spark,
            warehouse=warehouse,
            notify=notify,
        )
        try:
            server.start()
            # Explicit host, token and auth type: a developer's own DATABRICKS_* settings must not leak in.
            client = create_workspace_client(settings, host=server.url, token=LOCAL_TOKEN, auth_type="pat")
            yield LocalWorld(connection, server, job, client, settings, warehouse, state)
        finally:
            server.stop()


def reset_state(state: Path) -> None:
    """Remove what an earlier demo left, so every demo starts from the same empty world."""
    for part in _STATE_PARTS:
        target = state / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    state.mkdir(parents=True, exist_ok=True)


# -- the flow ----------------------------------------------------------------------------------------------


def plan_uploads(samples: Path) -> list[PlannedUpload]:
    """Days in date order, except that the second-newest day arrives after the newest; bad files last."""
    days = sorted(samples.glob("*.csv"))
    bad = sorted(path for path in (samples / "bad").glob("*") if path.is_file())
    if not days:
        raise DemoError(f"no sample files (*.csv) in {samples}")
    planned = [PlannedUpload(path, ARCHIVED) for path in days]
    if len(planned) >= 2:
        late = replace(planned[-2], note="late: arrives after a newer day")
        planned[-2:] = [planned[-1], late]
    planned += [PlannedUpload(path, REJECTED, "bad") for path in bad]
    return planned


class Progress:
    """Timestamped progress lines."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=self.out, flush=True)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def upload_and_deliver(
    world: LocalWorld, plan: Sequence[PlannedUpload], progress: Progress, timeout: float = 60.0
) -> list[FileResult]:
    """Upload each file and let the watcher deliver its event before the next one arrives."""
    from azure.storage.blob import BlobClient, ContentSettings

    results = {world.settings.landing.path(item.path.name): FileResult(item) for item in plan}
    delivered = threading.Condition()

    def sink(event: Event, outcomes: list[Outcome]) -> None:
        with delivered:
            results[event.path].outcomes.extend(outcomes)
            delivered.notify_all()

    last_failure: dict[str, str] = {}

    def listener(report: DeliveryReport) -> None:
        if not report.delivered:
            last_failure[report.event.path] = report.detail
            progress(f"  delivery of {report.event.path} failed (attempt {report.attempt}): {report.detail}")

    watcher = Watcher(
        AzuriteSource(world.connection_string),
        [world.settings.landing],
        deliver_in_process(_gate(world), sink),
        world.state / "watch",
        policy=RetryPolicy(max_attempts=4, scale=0.05),
        listener=listener,
    )
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, args=(stop, 0.25), name="filegate-watch", daemon=True)
    thread.start()
    progress(f"Watcher: polling {world.settings.landing} and delivering BlobCreated events to the function's core")
    try:
        for item in plan:
            path = world.settings.landing.path(item.path.name)
            blob = BlobClient.from_connection_string(world.connection_string, world.settings.landing.container, path)
            blob.upload_blob(
                item.path.read_bytes(), overwrite=True, content_settings=ContentSettings(content_type="text/csv")
            )
            with delivered:
                if not delivered.wait_for(lambda: bool(results[path].outcomes), timeout):  # noqa: B023 - waited on here
                    failure = last_failure.get(path)
                    why = f"; the last attempt failed: {failure}" if failure else "; see the log for why"
                    raise DemoError(f"no event was delivered for {path} within {timeout:.0f} s{why}")
            note = f" ({item.note})" if item.note else ""
            progress(f"Uploaded {item.path.name}{note} -> {_describe(results[path])}")
    finally:
        stop.set()
        thread.join(10)
    return list(results.values())


def _gate(world: LocalWorld) -> Gate:
    from filegate.azure_storage import AzureBlobStore
    from filegate.jobs import DatabricksJobs
    from filegate.runtime import build_gate

    store = AzureBlobStore.from_settings(world.settings)
    return replace(build_gate(store, world.settings), jobs=DatabricksJobs(world.settings, world.client))


def _describe(result: FileResult) -> str:
    outcome = result.outcome
    if outcome is None:
        return "no event delivered"
    if outcome.status == ARCHIVED:
        return f"archived, run {outcome.run_id} queued"
    if outcome.status == REJECTED:
        return f"rejected: {'; '.join(outcome.reasons)}"
    return f"{outcome.status}: {'; '.join(outcome.reasons)}"


def wait_for_runs(
    client: WorkspaceClient, run_ids: Sequence[int], names: dict[int, str], progress: Progress, timeout: float
) -> dict[int, Run]:
    """Poll the runs until all have ended, printing each change of state or task."""
    deadline = time.monotonic() + timeout
    last: dict[int, str] = {}
    finished: dict[int, Run] = {}
    while len(finished) < len(run_ids):
        for run_id in run_ids:
            if run_id in finished:
                continue
            run = client.jobs.get_run(run_id)
            state = run_state(run)
            running = [task.task_key for task in run.tasks or () if run_state(task) == "RUNNING"]
            label = f"{state} {running[0]}" if running else state
            if label != last.get(run_id):
                last[run_id] = label
                took = f" in {format_duration(duration_seconds(run))}" if run.end_time else ""
                progress(f"Run {run_id} ({names.get(run_id, '?')}): {label.lower()}{took}")
            if run.end_time:
                finished[run_id] = run
        if len(finished) < len(run_ids):
            if time.monotonic() > deadline:
                raise DemoError(f"runs still active after {timeout:.0f} s: {sorted(set(run_ids) - set(finished))}")
            time.sleep(1.0)
    return finished


# -- the report --------------------------------------------------------------------------------------------


def render_files(results: Sequence[FileResult]) -> str:
    rows = []
    for result in results:
        outcome = result.outcome
        status = outcome.status if outcome else "not delivered"
        where = ""
        if outcome is not None:
            where = outcome.archived_path or outcome.rejected_path or ""
        rows.append([result.upload.path.name, status, where, outcome.run_id if outcome else ""])
        for reason in outcome.reasons if outcome else ():
            rows.append(["", "", f"  - {reason}", ""])
    return render_table(("FILE", "OUTCOME", "WHERE / WHY", "RUN"), rows, indent="  ")


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
    columns = [c for c in target_columns(contract) if not rows or c in rows[0]] + [SOURCE_FILE_COLUMN]
    shown = [
        {**row, SOURCE_FILE_COLUMN: short_source(str(row.get(SOURCE_FILE_COLUMN, ""))).rsplit("/", 1)[-1]}
        for row in rows
    ]
    return f"{head}\n{render_rows(shown, columns)}"


def render_rejects(warehouse: Path, dataset: str) -> str:
    rows = read_table(_table_folder(warehouse, f"{dataset}_rejects"))
    if not rows:
        return "  (none: every row of the loaded files passed the contract)"
    shown = [{**row, "file": str(row.get("_source_file", "")).rsplit("/", 1)[-1]} for row in rows]
    shown.sort(key=lambda row: (row["file"], str(row.get("reason"))))
    return f"  {len(rows)} rows\n{render_rows(shown, ('file', 'reason', 'raw_line'))}"


def render_history(path: Path) -> str:
    """Which engine wrote the table's commits, and what they were (`DESCRIBE HISTORY`, read by delta-rs)."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return "  (no table)"
    operations: dict[tuple[str, str], int] = {}
    for commit in DeltaTable(str(path)).history():
        key = (str(commit.get("operation")), str(commit.get("engineInfo", "")))
        operations[key] = operations.get(key, 0) + 1
    return "\n".join(
        f"  {count} x {operation} by {engine}" for (operation, engine), count in sorted(operations.items())
    )


def render_processing_log(warehouse: Path) -> str:
    rows = read_table(_table_folder(warehouse, PROCESSING_LOG))
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


def run_problems(world: LocalWorld, runs: dict[int, Run], names: dict[int, str]) -> list[str]:
    """Every run that did not succeed, with why each failed task failed and where its whole log is."""
    lines = []
    for run_id, run in sorted(runs.items()):
        if run_state(run) == "SUCCESS":
            continue
        lines.append(f"  - run {run_id} ({names.get(run_id, '?')}) ended {run_state(run)}")
        logs = world.jobs.log_files(run_id)
        failed = [task for task in run.tasks or () if run_state(task) in FAILED_STATES]
        for task in failed:
            lines += failure_lines(world.client, task, indent="      ")
            log_file = logs.get(str(task.task_key))
            if log_file is not None:
                lines.append(f"      log: {_relative(log_file)}")
        if not failed and run.state is not None and run.state.state_message:
            lines.append(f"      {run.state.state_message}")
    return lines


def render_revisit(state: Path, url: str) -> str:
    """How to see the runs again once the demo (and its Jobs API) has stopped."""
    jobs, warehouse = _relative(state / "jobs"), _relative(state / "warehouse")
    port = url.rsplit(":", 1)[-1]
    return "\n".join(
        [
            "The run pages and `filegate status` need the local Jobs API, which stopped with the demo. To look again:",
            "  make demo ARGS=--keep-serving    the demo again, with its run pages up until Ctrl-C",
            f"  .venv/bin/python -m local_world jobs-api --state-dir {jobs} --warehouse {warehouse} --port {port}",
            "                                   these runs served again (the run page URLs above work again), then:",
            f"  DATABRICKS_HOST={url} DATABRICKS_TOKEN=local .venv/bin/filegate status [RUN_ID]",
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
        print(f"\nTarget table {dataset} ({_table_folder(world.warehouse, dataset)}):", file=out)
        print(render_history(_table_folder(world.warehouse, dataset)), file=out)
        print(render_target(world.warehouse, contracts[dataset]), file=out)
        print(f"\nRejected rows ({dataset}_rejects):", file=out)
        print(render_rejects(world.warehouse, dataset), file=out)
    print(f"\nProcessing log ({PROCESSING_LOG}):", file=out)
    print(render_processing_log(world.warehouse), file=out)


def run_demo(
    samples: Path,
    state: Path,
    root: Path,
    out: TextIO,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    keep_serving: bool = False,
    bundle: Path | None = None,
    spark: str = "connect",
) -> int:
    """The whole demo; returns the exit code."""
    progress = Progress(out)
    progress(f"Filegate demo: the whole flow on this machine (state and logs in {state})")
    plan = plan_uploads(samples)
    with local_world(state, root, bundle, spark=spark, notify=progress) as world:
        progress(f"Azurite blob service on {world.connection_string.split('BlobEndpoint=')[1].rstrip(';')}")
        progress(f"Local Jobs API on {world.jobs.url} (DATABRICKS_HOST for the function and `filegate status`)")
        results = upload_and_deliver(world, plan, progress)
        names = {r.outcome.run_id: r.upload.path.name for r in results if r.outcome and r.outcome.run_id is not None}
        run_ids = sorted(names)
        tasks = ", then ".join(task.task_key for task in world.job.tasks)
        progress(f"Waiting for {len(run_ids)} runs of {world.job.name} ({tasks}; one run at a time)")
        runs = wait_for_runs(world.client, run_ids, names, progress, timeout)
        print_tables(world, results, len(run_ids), out)
        problems = problems_of(results) + run_problems(world, runs, names)
        print(file=out)
        if problems:
            print("Something went wrong:", file=out)
            print("\n".join(problems), file=out)
        else:
            print(
                f"Done in {progress.elapsed:.0f} s: {len(results)} files, {len(runs)} runs, all as expected.", file=out
            )
        if keep_serving:
            print(f"\nRun pages stay up at {world.jobs.url}/ ; in another terminal:", file=out)
            print(f"  DATABRICKS_HOST={world.jobs.url} DATABRICKS_TOKEN=local .venv/bin/filegate status", file=out)
            print("Press Ctrl-C to stop.", file=out, flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                print("Stopping.", file=out)
        else:
            print(f"\n{render_revisit(state, world.jobs.url)}", file=out)
    return exits.FAILED if problems else exits.OK


def _log_to_file(path: Path) -> None:
    """Full logs go to a file; the terminal shows progress and errors only."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(path, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    root.addHandler(file_handler)
    root.addHandler(errors)
    root.setLevel(logging.INFO)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # A second Ctrl-C must not cut the clean-up short: from here on, stopping is under way.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    """`python -m local_world demo`: run the whole flow locally and print what happened."""
    from local_world.jobs_api import SPARK_MODES, FolderInUse, FolderLock, repository_root

    root = repository_root()
    parser = argparse.ArgumentParser(prog="python -m local_world demo", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=Path, default=root / "data" / "samples", help="sample files (bad ones in bad/)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=root / ".filegate" / "demo", help="where the demo keeps its state"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the runs")
    parser.add_argument("--keep-serving", action="store_true", help="keep the run pages up until Ctrl-C")
    parser.add_argument("--bundle", type=Path, default=None, help="the bundle's job file (default: the repository's)")
    parser.add_argument(
        "--spark",
        choices=SPARK_MODES,
        default="connect",
        help="connect (default): the tasks share one Spark Connect server; classic: a local Spark per task",
    )
    args = parser.parse_args(argv)
    from filegate.readiness import check_local_tools

    missing = [check for check in check_local_tools() if not check.ok]
    if missing:
        for check in missing:
            print(f"python -m local_world demo: {check.name}: {check.detail}", file=sys.stderr)
        return exits.CONFIG
    lock = FolderLock(args.state_dir, "python -m local_world demo")
    try:
        lock.acquire()
    except FolderInUse as exc:
        print(f"python -m local_world demo: {exc}", file=sys.stderr)
        return exits.FAILED
    # Ctrl-C and SIGTERM both unwind through the context managers that stop what the demo started
    # (a shell may start background jobs with SIGINT ignored; the demo wants it either way).
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # A demo killed with kill -9 could not stop its Azurite and Spark Connect server: stop them now.
        for line in stop_leftovers(args.state_dir):
            print(line, flush=True)
        reset_state(args.state_dir)
        _log_to_file(args.state_dir / "demo.log")
        return run_demo(
            args.samples,
            args.state_dir,
            root,
            sys.stdout,
            timeout=args.timeout,
            keep_serving=args.keep_serving,
            bundle=args.bundle,
            spark=args.spark,
        )
    except KeyboardInterrupt:
        print("\nInterrupted: stopped everything the demo started.", file=sys.stderr)
        return exits.INTERRUPTED
    except FilegateError as exc:
        print(f"python -m local_world demo: {exc}", file=sys.stderr)
        return exits.FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()
