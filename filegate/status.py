"""`filegate status`: the configured job's recent runs, or one run with its tasks, through databricks-sdk.

It talks to whatever DATABRICKS_HOST names: a workspace, or the local Jobs API of `make demo`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING

from filegate import exits, uris
from filegate.errors import FilegateError, SettingsError
from filegate.jobs import ACTIVE_STATES, never_ran, run_state

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.jobs import BaseRun, Run, RunOutput, RunTask

DEFAULT_LIMIT = 10
# The Jobs API returns at most 25 runs per page; the SDK pages on.
_PAGE_LIMIT = 25
RUN_COLUMNS = ("RUN", "STATE", "STARTED (UTC)", "QUEUED", "DURATION", "DATASET", "SOURCE FILE", "RUN PAGE")
# The batch job's runs carry a pipeline and its batch's manifest where the ingest job's carry a dataset and a file.
BATCH_RUN_COLUMNS = ("RUN", "STATE", "STARTED (UTC)", "QUEUED", "DURATION", "PIPELINE", "MANIFEST", "RUN PAGE")
TASK_COLUMNS = ("TASK", "STATE", "STARTED (UTC)", "DURATION", "RUN PAGE")
FAILED_STATES = frozenset({"FAILED", "TIMEDOUT", "INTERNAL_ERROR"})
# How much of a failed task's stack trace `filegate status RUN_ID` prints (the run output holds all of it).
TRACE_LINES = 8


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]], indent: str = "") -> str:
    """Plain columns, left-aligned, widths from the content; None shows as an empty cell."""
    text_rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in text_rows:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = [
        indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *text_rows]
    ]
    return "\n".join(lines)


def parameter(run: BaseRun | Run, name: str) -> str:
    """A job parameter's value in a run (its default when the run did not set it)."""
    for entry in run.job_parameters or ():
        if entry.name == name:
            return str(entry.value if entry.value is not None else entry.default or "")
    return ""


def run_message(run: BaseRun | Run | RunTask) -> str:
    """Why the run ended as it did (empty when it succeeded or has not ended)."""
    details = run.status.termination_details if run.status is not None else None
    if details is not None and details.message:
        return str(details.message)
    if run.state is not None and run.state.state_message:
        return str(run.state.state_message)
    return ""


def ended_in_error(run: BaseRun | Run | RunTask) -> bool:
    """Whether a run or task run ended in an error: failed, timed out, an internal error, or cancelled by the
    platform. A run answered without the legacy state reads a timeout as its termination code, CANCELED (a
    user's cancel is USER_CANCELED), so that code counts as an error whatever the legacy result says."""
    if run_state(run) in FAILED_STATES:
        return True
    details = run.status.termination_details if run.status is not None else None
    return details is not None and getattr(details.code, "value", details.code) == "CANCELED"


def _queued(run: BaseRun | Run | RunTask) -> bool:
    """Whether the run is still in the job's queue: it has a start time (when it was triggered) but has not run."""
    life = run.state.life_cycle_state if run.state is not None else None
    state = run.status.state if run.status is not None else None
    return "QUEUED" in (getattr(life, "value", None), getattr(state, "value", None))


def duration_seconds(run: BaseRun | Run | RunTask, now_ms: int | None = None) -> float | None:
    """How long it ran (time in the job's queue not counted), or has been running; None before it started.

    A run's start time is when it was triggered: a run still queued, or skipped, has one but has not run.
    """
    if _queued(run) or never_ran(run):
        return None
    queued = (run.queue_duration or 0) / 1000
    if run.run_duration:
        return max(run.run_duration / 1000 - queued, 0.0)
    if not run.start_time:
        return None
    end = run.end_time or (now_ms if now_ms is not None else int(time.time() * 1000))
    return max((end - run.start_time) / 1000 - queued, 0.0)


def queue_seconds(run: BaseRun | Run, now_ms: int | None = None) -> float | None:
    """How long the run waited in the job's queue while its max_concurrent_runs runs went on (so far, for a run
    still queued that the API gives no queue time); None when unknown."""
    if run.start_time and _queued(run):
        # The wait so far, whatever queue_duration says before the run leaves the queue (none, or 0).
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        return max((now - run.start_time) / 1000, (run.queue_duration or 0) / 1000, 0.0)
    return run.queue_duration / 1000 if run.queue_duration is not None else None


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def format_time(epoch_ms: int | None) -> str:
    if not epoch_ms:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def short_source(uri: str) -> str:
    """The source URI with its scheme (which cloud) but without the account's DNS suffix."""
    return uris.short(uri)


def run_row(run: BaseRun | Run) -> list[str]:
    """One run as a row under `run_columns`: an ingest run names its dataset, a batch run its pipeline."""
    return [
        str(run.run_id),
        run_state(run),
        format_time(run.start_time),
        format_duration(queue_seconds(run)),
        format_duration(duration_seconds(run)),
        parameter(run, "dataset") or parameter(run, "pipeline"),
        short_source(parameter(run, "source_path")),
        run.run_page_url or "",
    ]


def recent_runs(client: WorkspaceClient, job_id: int, limit: int = DEFAULT_LIMIT) -> list[BaseRun]:
    """The job's newest runs first."""
    runs = client.jobs.list_runs(job_id=job_id, limit=min(limit, _PAGE_LIMIT))
    return list(islice(runs, limit))


def task_failure(client: WorkspaceClient, task: RunTask, trace_lines: int = TRACE_LINES) -> tuple[str, list[str]]:
    """A failed task's error and the last lines of its stack trace, from one `runs/get-output` call."""
    output = _task_output(client, task)
    error = str(output.error) if output is not None and output.error else run_message(task)
    text = str(output.error_trace or "").rstrip() if output is not None else ""
    if error.strip() and text.endswith(error.strip()):
        text = text[: -len(error.strip())]  # the exception itself, already shown as the error
    return error, [line for line in text.splitlines() if line.strip()][-trace_lines:]


def failure_lines(client: WorkspaceClient, task: RunTask, indent: str = "  ") -> list[str]:
    """A failed task as `filegate status` and the demo show it: its error, then the end of its trace."""
    error, trace = task_failure(client, task)
    # An exception's message may span lines (Spark's AnalysisException adds the SQL and a caret under it): each
    # line under the task's, or they stood at the margin, outside the Errors block.
    first, *rest = [line for line in (error or "").splitlines() if line.strip()] or ["(no error message)"]
    return [f"{indent}{task.task_key}: {first.strip()}", *(f"{indent}  {line}" for line in [*rest, *trace])]


def _task_output(client: WorkspaceClient, task: RunTask) -> RunOutput | None:
    from databricks.sdk.errors.base import DatabricksError

    if task.run_id is None:
        return None
    try:
        return client.jobs.get_run_output(task.run_id)
    except DatabricksError:
        return None  # output is gone (runs older than 60 days) or not kept for this task kind


def render_runs(runs: Sequence[BaseRun], job_name: str, job_id: int, host: str) -> str:
    if not runs:
        return f"No runs of job {job_name} (id {job_id}) on {host} yet."
    heading = f"Runs of job {job_name} (id {job_id}) on {host}, newest first:"
    batch_runs = all(parameter(run, "pipeline") and not parameter(run, "dataset") for run in runs)
    columns = BATCH_RUN_COLUMNS if batch_runs else RUN_COLUMNS
    return f"{heading}\n{render_table(columns, [run_row(run) for run in runs], indent='  ')}"


def render_run(client: WorkspaceClient, run: Run) -> str:
    """One run: what it loaded, how it ended, its tasks and, when it failed, why."""
    lines = [f"Run {run.run_id} of job {run.run_name or '?'} (id {run.job_id}): {run_state(run)}"]
    facts = [
        ("started", _started(run)),
        ("queued", format_duration(queue_seconds(run))),
        ("duration", format_duration(duration_seconds(run))),
        ("dataset", parameter(run, "dataset")),
        ("pipeline", parameter(run, "pipeline")),
        ("source", parameter(run, "source_path")),
        ("batch", parameter(run, "batch_id")),
        ("run page", run.run_page_url or ""),
    ]
    lines += [f"  {name:<9} {value}" for name, value in facts if value]
    tasks = run.tasks or []
    if tasks:
        rows = [
            [
                f"{task.task_key} (retry {task.attempt_number})" if task.attempt_number else task.task_key,
                run_state(task),
                format_time(task.start_time),
                format_duration(duration_seconds(task)),
                task.run_page_url or "",
            ]
            for task in tasks
        ]
        lines += ["Tasks:", render_table(TASK_COLUMNS, rows, indent="  ")]
    failed = [task for task in last_attempts(tasks) if ended_in_error(task)]
    if failed:
        lines.append("Errors:")
        for task in failed:
            lines += failure_lines(client, task)
    elif run_state(run) not in ACTIVE_STATES | {"SUCCESS"}:
        message = run_message(run)
        if message:
            lines.append(f"Message: {message}")
    return "\n".join(lines)


def _started(run: Run) -> str:
    if not run.start_time:
        return "not yet"
    if _queued(run):
        return f"not yet (queued since {format_time(run.start_time)} UTC)"
    if never_ran(run):
        return f"never (triggered {format_time(run.start_time)} UTC, skipped by Databricks)"
    return f"{format_time(run.start_time)} UTC"


def last_attempts(tasks: list[RunTask]) -> list[RunTask]:
    """Each task's last attempt, in the run's order: a task retried lists each attempt as a task run of its own,
    and only the last says how the task ended (a failure a retry made good is no error of the run)."""
    last: dict[str, RunTask] = {}
    for task in tasks:
        key = task.task_key or ""
        if key not in last or (task.attempt_number or 0) >= (last[key].attempt_number or 0):
            last[key] = task
    return [task for task in tasks if last.get(task.task_key or "") is task]


# What `filegate status` reads: the workspace and one job, never storage. Only the listed job's own settings: a
# malformed FILEGATE_BATCH_JOB_ID does not stop a listing of the ingest job's runs, nor its check in doctor.
SIGN_IN_SETTINGS = (
    "FILEGATE_DATABRICKS_AUTH",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
    "DATABRICKS_CLIENT_ID",
    "DATABRICKS_CLIENT_SECRET",
)
STATUS_SETTINGS = ("FILEGATE_JOB_ID", "FILEGATE_JOB_NAME", *SIGN_IN_SETTINGS)
BATCH_STATUS_SETTINGS = ("FILEGATE_BATCH_JOB_ID", "FILEGATE_BATCH_JOB_NAME", *SIGN_IN_SETTINGS)


def main(argv: list[str]) -> int:
    """`filegate status [RUN_ID]`: recent runs of the configured job (or --batch: the batch job), or one run."""
    from filegate.settings import settings_help

    parser = argparse.ArgumentParser(
        prog="filegate status",
        description=main.__doc__,
        epilog=settings_help((*STATUS_SETTINGS[:2], *BATCH_STATUS_SETTINGS)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_id", nargs="?", type=int, help="show this run with its tasks and errors")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="how many recent runs to list")
    parser.add_argument("--json", action="store_true", help="print the Jobs API's answer as JSON")
    parser.add_argument(
        "--batch",
        action="store_true",
        help="the batch job's runs (FILEGATE_BATCH_JOB_ID, else FILEGATE_BATCH_JOB_NAME): the sealed pipeline batches",
    )
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error("--limit must be at least 1")
    from databricks.sdk.errors.base import DatabricksError

    from filegate.jobs import VIEW_GRANT, DatabricksJobs, named_error, not_found, not_json, unreached
    from filegate.settings import DEFAULT_BATCH_JOB_NAME, DEFAULT_JOB_NAME, Settings

    host, job_id = "?", None
    try:
        settings = Settings.from_env(names=BATCH_STATUS_SETTINGS if args.batch else STATUS_SETTINGS)
        # The function's settings name both jobs, each id winning over its name: the batch job is asked for by
        # --batch, not by overriding FILEGATE_JOB_NAME, which a FILEGATE_JOB_ID set beside it would win over.
        if args.batch:
            job_id_set, job_name, setting = settings.batch_job_id, settings.batch_job_name, "FILEGATE_BATCH_JOB_ID"
        else:
            job_id_set, job_name, setting = settings.job_id, settings.job_name, "FILEGATE_JOB_ID"
        bundle_name = DEFAULT_BATCH_JOB_NAME if args.batch else DEFAULT_JOB_NAME
        jobs = DatabricksJobs(
            settings, job_id=job_id_set, job_name=job_name, setting=setting, bundle_name=bundle_name, grant=VIEW_GRANT
        )
        # A Jobs API that does not answer is said within seconds (exit 75), not after the SDK's retries.
        host = jobs.reachable()
        client = jobs.client
        if args.run_id is not None:
            try:
                run = client.jobs.get_run(args.run_id)
            except DatabricksError as exc:
                if not_found(exc):
                    raise SettingsError(f"run {args.run_id} does not exist in {host}") from exc
                raise
            print(json.dumps(run.as_dict(), indent=2) if args.json else render_run(client, run))
            # Scripts and schedulers read the exit code: a failed run is not a success.
            return 1 if ended_in_error(run) or run_state(run) == "CANCELED" or never_ran(run) else 0
        job_id = jobs.job_id()
        runs = recent_runs(client, job_id, args.limit)
        # With FILEGATE_JOB_ID the name is not configured: a run carries its job's name, else the job says it.
        if job_id_set is not None:
            found = runs[0].run_name if runs else None
            job = None if found else client.jobs.get(job_id)
            job_name = found or (job.settings.name if job and job.settings else None) or "?"
    except json.JSONDecodeError as exc:  # before ValueError and OSError: requests' JSONDecodeError is both
        return exits.report_failure("filegate status", not_json(host, exc))
    except ValueError as exc:
        # The SDK raises ValueError for missing or conflicting credentials.
        print(f"filegate status: configuration error: {exc}", file=sys.stderr)
        return exits.CONFIG
    except FilegateError as exc:
        return exits.report_failure("filegate status", exc)
    except DatabricksError as exc:
        # Credentials, permissions or a job id to fix (2), or the Jobs API failing for now (75).
        return exits.report_failure(
            "filegate status", named_error(exc, host, job_id, setting, bundle_name, VIEW_GRANT, jobs.auth_type)
        )
    except OSError as exc:
        return exits.report_failure("filegate status", unreached(host, exc))
    if args.json:
        print(json.dumps([run.as_dict() for run in runs], indent=2))
    else:
        print(render_runs(runs, job_name, job_id, host))
    return exits.OK
