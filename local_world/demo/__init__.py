"""`python -m local_world demo` (what `make demo` runs): the whole flow on this machine, started and stopped for you.

Azurite and the local Jobs API start on free ports; the sample days are uploaded into the landing
container in a realistic order (one day arrives late, one file is bad); the watcher delivers the
BlobCreated events to the function's core, which validates, archives or rejects, and starts a run
per file; the runs load the Delta tables on local Spark (each task its own process, all of them on
one Spark Connect server started for the first task). At the end it prints what happened to each
file, each run, the target table, the rejects and the processing log; when something failed, each
failed task's error and log. Then the e-commerce scene's report (when the samples hold `ecommerce/`):
two business days of a pipeline batch, piece by piece, each sealed day run by the batch job (see
`_ecommerce.py`); its files are uploaded right after the order-tracking ones, so that its runs work
beside theirs. It exits 1 when any file, run or table is not what the demo expects. One demo at a
time per state folder: it is locked while a demo runs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from filegate import exits
from filegate.errors import FilegateError
from filegate.jobs import run_state
from local_world.demo._ecommerce import (
    LATE_FOLDER,
    SAMPLES_FOLDER,
    BatchScene,
    plan_batches,
    report_batches,
    upload_batches,
)
from local_world.demo._flow import (
    FileResult,
    PlannedUpload,
    Progress,
    plan_uploads,
    upload_and_deliver,
    wait_for_runs,
)
from local_world.demo._report import (
    print_tables,
    problems_of,
    read_table,
    render_revisit,
    render_serving,
    run_problems,
    summary_column,
    table_problems,
    target_columns,
)
from local_world.demo._world import JOBS_FOLDER, DemoError, LocalWorld, local_world, reset_state
from local_world.emulators import stop_leftovers

if TYPE_CHECKING:
    from local_world.jobs_api import JobSpec

__all__ = [
    "BatchScene",
    "DemoError",
    "LocalWorld",
    "PlannedUpload",
    "local_world",
    "main",
    "plan_batches",
    "plan_uploads",
    "read_table",
    "run_demo",
    "runs_of",
    "summary_column",
    "target_columns",
]

log = logging.getLogger("local_world.demo")

DEFAULT_TIMEOUT = 900.0
ORDER_TRACKING = "order-tracking"
ECOMMERCE = "ecommerce"
ALL_SCENES = "all"
SCENES = (ALL_SCENES, ORDER_TRACKING, ECOMMERCE)


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
    scene: str = ALL_SCENES,
) -> int:
    """The whole demo; returns the exit code."""
    progress = Progress(out)
    progress(f"Filegate demo: the whole flow on this machine (state and logs in {state})")
    plan = plan_uploads(samples) if scene in (ALL_SCENES, ORDER_TRACKING) else []
    batches = plan_batches(samples, state / LATE_FOLDER) if _plays_batches(samples, scene) else None
    with local_world(state, root, bundle, spark=spark, notify=progress) as world:
        progress(f"Azurite blob service on {world.connection_string.split('BlobEndpoint=')[1].rstrip(';')}")
        progress(f"Local Jobs API on {world.jobs.url} (DATABRICKS_HOST for the function and `filegate status`)")
        progress(
            f"Failed tasks are retried as the bundle's max_retries say, {world.jobs.retry_interval_ms} ms after the "
            "failed attempt started (not min_retry_interval_millis)"
        )
        if bundle is not None:
            progress("The tables are not checked: the tasks are the given bundle's, not the repository's jobs")
        problems, files, runs = _play(world, plan, batches, scene, progress, timeout, check_tables=bundle is None)
        print(file=out)
        if problems:
            print("Something went wrong:", file=out)
            print("\n".join(problems), file=out)
        else:
            print(f"Done in {progress.elapsed:.0f} s: {files} files, {runs} runs, all as expected.", file=out)
        if keep_serving:
            archive_storage = world.settings.azure_archive_storage or world.connection_string
            print(f"\n{render_serving(world.jobs.url, world.connection_string, archive_storage)}", file=out, flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                # Everything stops now: how to look at these runs again is as true as after a demo without it.
                print(f"Stopping.\n\n{render_revisit(state, world.jobs.url)}", file=out)
        else:
            print(f"\n{render_revisit(state, world.jobs.url)}", file=out)
    return exits.FAILED if problems else exits.OK


def _plays_batches(samples: Path, scene: str) -> bool:
    return scene == ECOMMERCE or (scene == ALL_SCENES and (samples / SAMPLES_FOLDER).is_dir())


def check_samples(samples: Path, scene: str) -> None:
    """DemoError for samples the scene cannot play, found before the previous demo's state is cleared."""
    if scene in (ALL_SCENES, ORDER_TRACKING):
        plan_uploads(samples)
    if _plays_batches(samples, scene):
        with tempfile.TemporaryDirectory() as late:  # where the scene writes its late file; thrown away
            plan_batches(samples, Path(late))


def _play(
    world: LocalWorld,
    plan: list[PlannedUpload],
    batches: BatchScene | None,
    scene: str,
    progress: Progress,
    timeout: float,
    *,
    check_tables: bool = True,
) -> tuple[list[str], int, int]:
    """Both scenes' uploads, their runs awaited together, then each scene's report: (problems, files, runs).

    `check_tables`: whether the ingest runs' tables are held to what they logged (the repository's jobs)."""
    results: list[FileResult] = []
    names: dict[int, str] = {}
    if plan:
        results = upload_and_deliver(world, plan, progress)
        names = {r.outcome.run_id: r.upload.path.name for r in results if r.outcome and r.outcome.run_id is not None}
    uploads = None
    if batches is not None and world.batch_job is None and scene == ALL_SCENES:
        progress("E-commerce scene skipped: the bundle given has no batch job")
    elif batches is not None:
        # Uploaded while the order-tracking runs still work: the local Jobs API runs each job's runs one
        # at a time but two jobs side by side, as Databricks does (their runs share only `processing_log`,
        # where appends do not conflict).
        uploads = upload_batches(world, batches, progress)
    waited = {**names, **(uploads.names if uploads else {})}
    jobs = [(world.job, names)] + ([(world.batch_job, uploads.names)] if uploads and world.batch_job else [])
    progress(f"Waiting for {runs_of(jobs, takes_turns=getattr(world.jobs.runner, 'runs_take_turns', False))}")
    finished = wait_for_runs(world.client, sorted(waited), waited, progress, timeout)
    problems: list[str] = []
    files = runs = 0
    if plan:
        ingest_runs = {run_id: run for run_id, run in finished.items() if run_id in names}
        print_tables(world, results, len(ingest_runs), progress.out)
        problems += problems_of(results) + run_problems(world, ingest_runs, names)
        if check_tables:
            succeeded = {run_id for run_id, run in ingest_runs.items() if run_state(run) == "SUCCESS"}
            problems += table_problems(world.warehouse, results, succeeded)
        files, runs = len(results), len(ingest_runs)
    if batches is not None and uploads is not None:
        print(file=progress.out, flush=True)
        batch_runs = {run_id: run for run_id, run in finished.items() if run_id in uploads.names}
        problems += report_batches(world, batches, uploads, batch_runs, progress.out)
        files += len(batches.plan)
        runs += len(world.jobs.runs(world.batch_job.job_id)) if world.batch_job else 0
    return problems, files, runs


def runs_of(jobs: Sequence[tuple[JobSpec, dict[int, str]]], *, takes_turns: bool = False) -> str:
    """What the demo waits for, job by job, with each job's tasks; `takes_turns`: classic Spark's one run at a time."""
    waited = [(job, runs) for job, runs in jobs if runs]
    parts = []
    for job, runs in waited:
        tasks = ", then ".join(task.task_key for task in job.tasks)
        parts.append(f"{len(runs)} runs of {job.name} ({tasks})")
    if not parts:
        return "no runs"
    if takes_turns:
        return f"{' and '.join(parts)} (one run at a time: with classic Spark every task is a JVM of its own)"
    if len(waited) == 1 and waited[0][0].max_concurrent_runs == 1:
        return f"{parts[0]} (one at a time: its max_concurrent_runs is 1)"
    limits = " and ".join(f"{job.max_concurrent_runs} of {job.name}" for job, _ in waited)
    whose = "their" if len(parts) > 1 else "its"
    return f"{' and '.join(parts)} (at once: at most {limits}, {whose} max_concurrent_runs)"


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


def _seconds(text: str) -> float:
    """A time above 0: with none, the demo would start everything only to give up on the first run."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


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
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait for the runs")
    parser.add_argument("--keep-serving", action="store_true", help="keep the run pages up until Ctrl-C")
    parser.add_argument("--bundle", type=Path, default=None, help="the bundle's job file (default: the repository's)")
    parser.add_argument(
        "--spark",
        choices=SPARK_MODES,
        default="connect",
        help="connect (default): the tasks share one Spark Connect server; classic: a local Spark per task",
    )
    parser.add_argument(
        "--scene",
        choices=SCENES,
        default=ALL_SCENES,
        help="all (default): order tracking, then the e-commerce batches when the samples have them",
    )
    args = parser.parse_args(argv)
    from filegate.readiness import check_local_tools

    missing = [check for check in check_local_tools() if not check.ok]
    if missing:
        for check in missing:
            print(f"python -m local_world demo: {check.name}: {check.detail}", file=sys.stderr)
        return exits.CONFIG
    try:
        check_samples(args.samples, args.scene)
    except DemoError as exc:
        print(f"python -m local_world demo: {exc} (--samples)", file=sys.stderr)
        return exits.CONFIG
    lock = FolderLock(args.state_dir, "python -m local_world demo")
    try:
        lock.acquire()
    except FolderInUse as exc:
        print(f"python -m local_world demo: {exc}; run it again once that one ends", file=sys.stderr)
        return exits.TRY_AGAIN
    try:
        # The previous demo's runs served again (`jobs-api --state-dir .../jobs`, as the demo's last lines say):
        # clearing the folder under that server would leave two Jobs APIs writing to it, the new lock unheld. That
        # server runs until someone stops it: waiting would not help.
        FolderLock(args.state_dir / JOBS_FOLDER, "local Jobs API").acquire().release()
    except FolderInUse as exc:
        lock.release()
        print(f"python -m local_world demo: {exc}", file=sys.stderr)
        return exits.CONFIG
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
            scene=args.scene,
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
