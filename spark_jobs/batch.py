"""What the batch job's tasks share: their arguments, the sealed manifest, the pipeline, and logging a failure.

The function seals a complete batch as `_batches/<pipeline>/<yyyy>/<mm>/<dd>/_sealed.rN.json` and runs
the batch job with that manifest, the pipeline's name and the batch id. Every task reads the same
manifest and pipeline file, so a retried or re-run task sees exactly the batch the seal describes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from filegate import exits
from filegate.contracts import Contract, Contracts, load_contracts
from filegate.errors import FilegateError
from filegate.pipelines import Pipeline, load_pipelines
from spark_jobs.processing_log import (
    FAILED,
    SCHEMA,
    SKIPPED,
    SUCCEEDED,
    TABLE,
    RunRecord,
    append_failing_runs,
    append_run,
    error_text,
    print_failure,
)
from spark_jobs.session import build_session
from spark_jobs.stage import stage_table
from spark_jobs.task import (
    TaskArgumentError,
    add_run_argument,
    add_table_arguments,
    checked_batch_id,
    parsed_location,
    parsed_run_id,
)
from spark_jobs.warehouse import TableLocation, Warehouse, instant

MAX_MANIFEST_BYTES = 16 * 1024 * 1024
# The job's first and last tasks: the first writes the batch's stage rows, the last releases them once
# the batch completed (every task after the first reads them: `${batch.d}` in the derived tables too).
FIRST_TASK, LAST_TASK = "stage_members", "derive_tables"
# The task whose verdict decides whether a batch may be merged, and the one whose verdict decides
# whether its derived tables may be built (and the batch completed).
VALIDATE_TASK, MERGE_TASK = "validate", "merge_targets"
# The tasks whose rows of a batch say where it stands (`read_progress`).
PROGRESS_TASKS = (FIRST_TASK, VALIDATE_TASK, MERGE_TASK, LAST_TASK)


class ManifestError(FilegateError):
    """The sealed manifest cannot be read or does not describe the batch the job was started for."""


class BatchNotValidated(FilegateError):
    """The batch's newest `validate` since it was last staged failed: a later task may not go on with it."""


class BatchPartlyStaged(FilegateError):
    """A member's newest `stage_members` row failed: its stage holds none of this batch's rows."""


class BatchNotMerged(FilegateError):
    """The batch's newest `merge_targets` since it was last staged failed: its targets may be half-merged."""


class RevisionSuperseded(ManifestError):
    """The manifest is an older revision of its batch than one already staged: running it would undo the newer."""


@dataclass(frozen=True)
class BatchArguments:
    """A batch task's parameters, as the job passes them."""

    manifest: str
    manifest_uri: str
    pipeline: str
    batch_id: str
    run_id: int | None
    location: TableLocation
    contracts_dir: Path | None


@dataclass(frozen=True)
class Member:
    """One file of the batch: its dataset, where to read it, and what the producer said about it."""

    dataset: str
    uri: str
    read_path: str
    expected_rows: int | None


@dataclass(frozen=True)
class Manifest:
    """A sealed batch: its pipeline, date, id, revision and member files."""

    pipeline: str
    business_date: date
    batch_id: str
    revision: int
    members: tuple[Member, ...]

    def member(self, dataset: str) -> Member | None:
        return next((m for m in self.members if m.dataset == dataset), None)


@dataclass(frozen=True)
class Completion:
    """The run and attempt of the last task that completed a batch (either None in a run without --run-id)."""

    run_id: int | None
    attempt: int | None


@dataclass(frozen=True)
class LogRow:
    """What `completion` reads of a processing_log row."""

    batch_id: str
    task: str
    run_id: int | None
    attempt: int | None
    status: str
    dataset: str | None
    started_at: datetime
    ended_at: datetime
    details: str | None = None

    def __post_init__(self) -> None:
        # Instants, so that rows are ordered right also in the hour the clocks go back (`instant`). The
        # columns are nullable: a row without a time (none of Filegate's) is read as it is.
        for name in ("started_at", "ended_at"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, instant(value))


@dataclass(frozen=True)
class Staging:
    """The newest revision of a batch its first task staged, and the run that staged it."""

    revision: int
    run_id: int | None


@dataclass(frozen=True)
class BatchContext:
    """Everything a batch task works with, resolved once at the start."""

    spark: SparkSession
    warehouse: Warehouse
    arguments: BatchArguments
    manifest: Manifest
    pipeline: Pipeline
    contracts: Contracts
    attempt: int
    started_at: datetime
    # Who completed the batch after it was last staged (None while it is in flight): its stage rows are
    # released, so no task of it runs again until a re-run stages it again.
    completed_by: Completion | None = None
    # The newest row `validate` logged after the batch was last staged (None: not validated since).
    validated: LogRow | None = None
    # The same of `merge_targets` (None: not merged since).
    merged: LogRow | None = None
    # The manifest's members whose newest `stage_members` row is not SUCCEEDED (`unstaged_members`).
    unstaged: tuple[str, ...] = ()

    def contract(self, dataset: str) -> Contract:
        return self.contracts[dataset]

    def record(self, task: str, **fields: Any) -> RunRecord:
        """A processing_log row of this task, with the batch's identity filled in."""
        values: dict[str, Any] = {
            "batch_id": self.arguments.batch_id,
            "dataset": None,
            "source_file": self.arguments.manifest_uri,
            "task": task,
            "started_at": self.started_at,
            "ended_at": datetime.now(UTC),
            "status": "SUCCEEDED",
            "run_id": self.arguments.run_id,
            "attempt": self.attempt,
            "pipeline": self.pipeline.name,
            "business_date": self.manifest.business_date,
        }
        values.update(fields)
        return RunRecord(**values)

    def failed(self, task: str, exc: BaseException, **fields: Any) -> RunRecord:
        """A FAILED processing_log row of this task, with the error that ended it."""
        return self.record(task, status=FAILED, error=error_text(exc), **fields)

    def member_fields(self, dataset: str, table: str) -> dict[str, str]:
        """What names a member's processing_log row: its dataset, the table it wrote and its file."""
        member = self.manifest.member(dataset)
        source_file = member.uri if member else self.arguments.manifest_uri
        return {"dataset": dataset, "table_name": table, "source_file": source_file}


def parse_batch_arguments(argv: Sequence[str], description: str) -> BatchArguments:
    """Parse and check a batch task's command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--manifest", required=True, help="The sealed manifest (a URI, or a local path).")
    parser.add_argument("--source-file", help="The manifest's URI to record as lineage; defaults to --manifest.")
    parser.add_argument("--pipeline", required=True, help="The pipeline's name; must match the manifest.")
    parser.add_argument("--batch-id", required=True, help="The batch id; must match the manifest.")
    add_run_argument(parser)
    add_table_arguments(parser)
    parsed = parser.parse_args(list(argv))
    batch_id = checked_batch_id(parsed.batch_id)
    for name in ("manifest", "pipeline"):
        if not getattr(parsed, name).strip():
            raise TaskArgumentError(f"--{name} must not be empty")
    return BatchArguments(
        manifest=parsed.manifest,
        manifest_uri=parsed.source_file or parsed.manifest,
        pipeline=parsed.pipeline.strip(),
        batch_id=batch_id,
        run_id=parsed_run_id(parsed),
        location=parsed_location(parsed),
        contracts_dir=parsed.contracts_dir,
    )


def parse_manifest(document: dict[str, Any], arguments: BatchArguments) -> Manifest:
    """The manifest's batch, checked against the run's parameters (a mismatch would load the wrong files)."""
    try:
        pipeline = str(document["pipeline"])
        batch_id = str(document["batch_id"])
        business_date = date.fromisoformat(str(document["business_date"]))
        members = tuple(
            Member(
                dataset=str(entry["dataset"]),
                uri=str(entry["uri"]),
                # The local Jobs API downloads every member and names the copy here; on Databricks the
                # tasks read the archived object itself.
                read_path=str(entry.get("local_path") or entry["uri"]),
                expected_rows=entry.get("expected_rows"),
            )
            for entry in document["members"]
        )
        revision = int(document.get("revision", 1))
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{arguments.manifest_uri} is not a sealed batch manifest: {exc!r}") from exc
    if pipeline != arguments.pipeline or batch_id != arguments.batch_id:
        raise ManifestError(
            f"{arguments.manifest_uri} seals batch {batch_id} of {pipeline}, but the run was started for batch "
            f"{arguments.batch_id} of {arguments.pipeline}"
        )
    if not members:
        # The sealer never writes one; a hand-made manifest without members would stage nothing and let the
        # later tasks run over nothing staged.
        raise ManifestError(f"{arguments.manifest_uri} names no member file")
    repeated = sorted(name for name, files in Counter(m.dataset for m in members).items() if files > 1)
    if repeated:
        # Each member replaces its dataset's rows of the batch: a second file of one dataset would replace the first.
        raise ManifestError(f"{arguments.manifest_uri} names more than one file of dataset {', '.join(repeated)}")
    return Manifest(pipeline, business_date, batch_id, revision, members)


def read_manifest_text(location: str, *, on_databricks: bool) -> str:
    """The manifest's text: a local file, or on Databricks the object itself through dbutils.

    Not through Spark: its file readers skip every file whose name starts with `_` (Spark's
    `HadoopFSUtils.shouldFilterOutPathName`, which hides `_SUCCESS`, `_delta_log` and the like), and
    the seal's name, `_sealed.rN.json`, starts with one.
    """
    if Path(location).is_file():
        return Path(location).read_text(encoding="utf-8")
    if on_databricks:
        from databricks.sdk.runtime import dbutils

        return str(dbutils.fs.head(location, MAX_MANIFEST_BYTES))
    raise ManifestError(f"the manifest {location} is not a local file, and off Databricks there is no reader for it")


def read_manifest(arguments: BatchArguments, *, on_databricks: bool) -> Manifest:
    """Read and check the sealed manifest the run was started with."""
    text = read_manifest_text(arguments.manifest, on_databricks=on_databricks)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{arguments.manifest_uri} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ManifestError(f"{arguments.manifest_uri} is not a JSON object")
    return parse_manifest(document, arguments)


def load_pipeline(arguments: BatchArguments) -> tuple[Pipeline, Contracts]:
    """The pipeline and the contracts, from the built-in datasets and --contracts-dir."""
    extra = (arguments.contracts_dir,) if arguments.contracts_dir else ()
    contracts = load_contracts(*extra)
    pipelines = load_pipelines(contracts, *extra)
    if arguments.pipeline not in pipelines:
        raise TaskArgumentError(f"unknown pipeline {arguments.pipeline!r}; known: {', '.join(sorted(pipelines))}")
    return pipelines[arguments.pipeline], contracts


def build_context(
    warehouse: Warehouse, arguments: BatchArguments, task: str, started_at: datetime, *, on_databricks: bool
) -> BatchContext:
    """Resolve the manifest, pipeline and attempt of a task."""
    spark = warehouse.spark
    pipeline, contracts = load_pipeline(arguments)
    manifest = read_manifest(arguments, on_databricks=on_databricks)
    unknown = [m.dataset for m in manifest.members if m.dataset not in pipeline.members]
    if unknown:
        raise ManifestError(f"the manifest names datasets that are not members of {pipeline.name}: {unknown}")
    attempt, batch = read_progress(warehouse, arguments, task)
    refuse_older_revision(manifest, newest_staging(batch), arguments.manifest_uri)
    return BatchContext(
        spark,
        warehouse,
        arguments,
        manifest,
        pipeline,
        contracts,
        attempt,
        started_at,
        completion(batch),
        newest_validation(batch),
        newest_since_staging(batch, MERGE_TASK),
        unstaged_members(batch, manifest),
    )


def refuse_older_revision(manifest: Manifest, staged: Staging | None, manifest_uri: str) -> None:
    """Refuse a revision older than the newest one staged (a repair of an old run after a newer revision ran).

    Every revision of a day is one batch id, so the newer revision's stage replaced the older one's: the
    older one staged again would put back the files the newer replaced, and its later tasks would read the
    newer revision's stage rows under the older manifest. Every task checks, not only the first.
    """
    if staged is None or manifest.revision >= staged.revision:
        return
    by = "" if staged.run_id is None else f" (run {staged.run_id})"
    raise RevisionSuperseded(
        f"{manifest_uri} is revision {manifest.revision} of batch {manifest.batch_id}, but revision "
        f"{staged.revision} of it was staged since{by} and replaces it: run revision "
        f"{staged.revision} again instead (its run's Run now or repair), or seal a newer revision"
    )


def read_progress(warehouse: Warehouse, arguments: BatchArguments, task: str) -> tuple[int, list[LogRow]]:
    """This task's attempt in its run (1, then one more per retry: Databricks retries with the same run id),
    and the batch's rows of its first task, `validate`, `merge_targets` and its last task (`completion`,
    `newest_staging`, `newest_since_staging` read them); one query."""
    warehouse.ensure_table(TABLE, SCHEMA)
    this_task = F.col("task") == F.lit(task)
    of_batch = (F.col("batch_id") == F.lit(arguments.batch_id)) & F.col("task").isin(*PROGRESS_TASKS)
    wanted = of_batch if arguments.run_id is None else of_batch | (this_task & (F.col("run_id") == arguments.run_id))
    rows = [
        LogRow(**row.asDict())
        for row in warehouse.read(TABLE).where(wanted).select(*(field.name for field in fields(LogRow))).collect()
    ]
    tried = [r.attempt for r in rows if r.task == task and r.run_id == arguments.run_id and r.attempt]
    attempt = 1 if arguments.run_id is None or not tried else max(tried) + 1
    # This task's rows of the run (read for the attempt) may be of other batches or tasks: left out.
    return attempt, [r for r in rows if r.batch_id == arguments.batch_id and r.task in PROGRESS_TASKS]


def staging_details(revision: int) -> str:
    """The `details` of the first task's member rows: the revision they staged (`newest_staging` reads it)."""
    return json.dumps({"revision": revision})


def newest_staging(rows: Sequence[LogRow]) -> Staging | None:
    """The newest revision the first task staged, from the batch's member rows (None before any staging).

    A FAILED member row counts too: the members that did stage replaced the batch's stage rows. Rows
    without a revision (logged before revisions were) say nothing.
    """
    staged = [
        Staging(int(revision), r.run_id)
        for r in rows
        if r.task == FIRST_TASK and r.dataset and r.details
        if (revision := json.loads(r.details).get("revision")) is not None
    ]
    return max(staged, key=lambda s: s.revision, default=None)


def completion(rows: Sequence[LogRow]) -> Completion | None:
    """Who completed the batch after its latest staging, from its processing_log rows (None: in flight).

    The batch is complete when the last task's newest row (by `ended_at`) among those started after the
    first task's newest SUCCEEDED member row is SUCCEEDED or SKIPPED: a failed attempt ends with a
    FAILED row, also one that logged its tables before failing, and a re-run stages the batch again.
    Neither run ids nor attempts decide (a run without --run-id has neither), only the order of rows.
    The completing attempt is the one after the newest failure: it built the tables, later ones skipped.
    """
    staged = [r.ended_at for r in rows if r.task == FIRST_TASK and r.dataset and r.status == SUCCEEDED]
    if not staged:
        return None
    after = sorted((r for r in rows if r.task == LAST_TASK and r.started_at > max(staged)), key=lambda r: r.ended_at)
    if not after or after[-1].status not in (SUCCEEDED, SKIPPED):
        return None
    failed = [i for i, r in enumerate(after) if r.status not in (SUCCEEDED, SKIPPED)]
    first = after[failed[-1] + 1 if failed else 0]
    return Completion(first.run_id, first.attempt)


def newest_validation(rows: Sequence[LogRow]) -> LogRow | None:
    """The newest row (by `ended_at`) `validate` logged after the batch's latest staging (`newest_since_staging`)."""
    return newest_since_staging(rows, VALIDATE_TASK)


def newest_since_staging(rows: Sequence[LogRow], task: str) -> LogRow | None:
    """The newest row (by `ended_at`) `task` logged after the batch's latest staging, from its processing_log
    rows (None: it did not run since the batch was last staged). A failed attempt's last row is FAILED.

    Only rows of an attempt that read the batch count: a task refused before it had a context (no
    attempt: an older revision's repair, a manifest it could not read) said nothing about this staging.
    """
    staged = [r.ended_at for r in rows if r.task == FIRST_TASK and r.dataset and r.status == SUCCEEDED]
    if not staged:
        return None
    after = [r for r in rows if r.task == task and r.attempt is not None and r.started_at > max(staged)]
    return max(after, key=lambda r: r.ended_at, default=None)


def unstaged_members(rows: Sequence[LogRow], manifest: Manifest) -> tuple[str, ...]:
    """The manifest's members whose newest `stage_members` row is FAILED, or that have none while others do.

    The batch's stage rows are replaced per member: a member whose stage failed holds none of them (an
    earlier revision's were released), and a merge over it would take back every version the batch opened.
    A batch nothing of which was staged yet is left to the other guards (a task run by hand).
    """
    newest: dict[str, LogRow] = {}
    for row in rows:
        if row.task != FIRST_TASK or not row.dataset:
            continue
        if row.dataset not in newest or row.ended_at > newest[row.dataset].ended_at:
            newest[row.dataset] = row
    if not newest:
        return ()
    return tuple(
        m.dataset for m in manifest.members if (found := newest.get(m.dataset)) is None or found.status != SUCCEEDED
    )


def refuse_partly_staged(context: BatchContext, task: str) -> None:
    """Refuse to validate, merge or derive a batch one of whose members failed its newest staging."""
    if context.unstaged:
        raise BatchPartlyStaged(
            f"{task}: {', '.join(context.unstaged)} of batch {context.manifest.batch_id} did not stage in the "
            f"newest {FIRST_TASK} (its processing_log row says why), so {task} does not go on with the batch: "
            f"its stage holds none of the batch's rows. Fix the member, then repair the run from {FIRST_TASK}"
        )


def refuse_failed_validation(context: BatchContext, task: str) -> None:
    """Refuse to go on with a batch whose newest `validate` since it was last staged failed.

    The job's `depends_on` keeps the later tasks from running after a failed `validate`; this holds
    when one is run on its own all the same (by hand, or a repair that leaves `validate` out). A batch
    not validated since its staging is let through (a task run by hand before `validate` ever ran):
    the job never starts a later task before `validate` succeeded.
    """
    if (failed := _failed_since_staging(context.validated)) is not None:
        raise BatchNotValidated(
            f"{task}: batch {context.manifest.batch_id} failed {VALIDATE_TASK}{failed} after it was last staged, "
            f"so {task} does not go on with it. A rule to change: change it, then repair the run from "
            f"{VALIDATE_TASK}; data to correct: seal a new revision of the batch, or re-run it whole once its "
            "files are replaced"
        )


def refuse_failed_merge(context: BatchContext, task: str) -> None:
    """Refuse to build the derived tables of a batch whose newest `merge_targets` since it was last staged failed.

    Built from half-merged targets, they would be wrong, and their rows would complete the batch: its
    stage rows released, every later `merge_targets` of it skipped, the targets after the failed one
    never merged. As for `refuse_failed_validation`, this holds when the task runs on its own (by hand,
    or a repair that leaves `merge_targets` out); a batch not merged since its staging is let through.
    """
    if (failed := _failed_since_staging(context.merged)) is not None:
        raise BatchNotMerged(
            f"{task}: batch {context.manifest.batch_id} failed {MERGE_TASK}{failed} after it was last staged, "
            f"so its targets may be half-merged and {task} does not build from them. Fix the cause, then repair "
            f"the run from {MERGE_TASK}"
        )


def _failed_since_staging(found: LogRow | None) -> str | None:
    """When a task's newest row since the batch's staging is FAILED, the run it failed in (" in run 7 (attempt 2)",
    or "" without a run id); else None."""
    if found is None or found.status != FAILED:
        return None
    return "" if found.run_id is None else f" in run {found.run_id} (attempt {found.attempt})"


def skip_completed(context: BatchContext, task: str) -> bool:
    """Log a task of a batch that completed after its latest staging as SKIPPED, and say why. Its stage rows
    are released: run over none, `validate` would replace the batch's results with empty ones and
    `merge_targets` take back the versions the batch opened."""
    if context.completed_by is None:
        return False
    run_id, attempt = context.completed_by.run_id, context.completed_by.attempt
    why = (
        f"batch {context.manifest.batch_id} completed in run {run_id} ({LAST_TASK}, attempt {attempt}) after it "
        f"was last staged, and its stage rows were released; re-run the whole batch, from {FIRST_TASK}, to load "
        "it again"
    )
    append_run(context.spark, context.warehouse, context.record(task, status=SKIPPED, details=json.dumps({"why": why})))
    print(f"{task}: {why}")
    return True


def release_batch_stage(context: BatchContext, task: str) -> None:
    """Delete every member's stage rows of the completed batch (`<d>_rejects` keeps its rows).

    The stage is partitioned by batch, so each DELETE drops a folder's files from the log without
    reading a row; the files go with VACUUM. A failed DELETE is said, not raised: the batch is
    complete, and rows left behind cost storage only (the last task, run again and skipped, deletes them).
    """
    for member in context.manifest.members:
        table = stage_table(context.contract(member.dataset))
        try:
            context.warehouse.delete_batch(table, context.manifest.batch_id)
        except Exception as exc:
            print(
                f"{task}: could not delete the stage rows of batch {context.manifest.batch_id} from {table}: "
                f"{error_text(exc)}",
                file=sys.stderr,
            )


BatchBody = Callable[[BatchContext], None]


def run_batch_task(task: str, argv: Sequence[str], body: BatchBody, session: SparkSession | None = None) -> int:
    """Run a batch task; on failure log it as FAILED (after whatever the task wrote), print why, exit non-zero."""
    started_at = datetime.now(UTC)
    try:
        arguments = parse_batch_arguments(argv, f"Filegate batch job, task {task}.")
    except TaskArgumentError as exc:
        print(f"{task}: {exc}", file=sys.stderr)
        return exits.CONFIG
    spark = session
    warehouse: Warehouse | None = None
    context: BatchContext | None = None
    on_databricks = "DATABRICKS_RUNTIME_VERSION" in os.environ
    try:
        if spark is None:
            spark = build_session(
                f"filegate-{task}", on_databricks=on_databricks, remote=os.environ.get("SPARK_REMOTE")
            )
        warehouse = Warehouse(spark, arguments.location)
        context = build_context(warehouse, arguments, task, started_at, on_databricks=on_databricks)
        body(context)
    except Exception as exc:
        error = error_text(exc)
        print(f"{task} failed for batch {arguments.batch_id} ({arguments.manifest_uri}): {error}", file=sys.stderr)
        print_failure(exc)
        if spark is not None and warehouse is not None:
            record = (
                context.failed(task, exc)
                if context is not None
                else RunRecord(
                    batch_id=arguments.batch_id,
                    dataset=None,
                    source_file=arguments.manifest_uri,
                    task=task,
                    started_at=started_at,
                    ended_at=datetime.now(UTC),
                    status=FAILED,
                    error=error,
                    run_id=arguments.run_id,
                    pipeline=arguments.pipeline,
                )
            )
            append_failing_runs(spark, warehouse, [record], task)
        return exits.FAILED
    return exits.OK
