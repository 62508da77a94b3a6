"""Entry point of the `target_load` task: check the arguments, merge the batch, log the run."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, "") and "__file__" in globals():
    # Run as a file (Databricks `spark_python_task`, or `python spark_jobs/target_load.py`): import the
    # package from the repository (or the installed wheel), not sibling modules from this folder.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pyspark.sql import SparkSession

from filegate.contracts import Contract
from spark_jobs.processing_log import (
    SKIPPED,
    SUCCEEDED,
    RunRecord,
    append_run,
    newest_failure,
    next_attempt,
    succeeded_at,
)
from spark_jobs.stage import STAGE_TASK
from spark_jobs.target import TASK, TargetCounts, TargetLoadError, load_target, release_stage, warning_counts
from spark_jobs.task import TaskArguments, run_task
from spark_jobs.warehouse import Warehouse, instant


def merge_batch(
    spark: SparkSession, warehouse: Warehouse, contract: Contract, arguments: TaskArguments, started_at: datetime
) -> None:
    """Merge the staged batch, append the run's row to processing_log, then release the batch's stage rows."""
    counts = load_target(warehouse, contract, arguments.batch_id)
    if counts.read == 0 and _already_merged(spark, warehouse, contract, arguments, started_at):
        return
    if not counts.changed_target and _logged_since_staged(
        spark, warehouse, contract, arguments, started_at, counts.started_at
    ):
        _release(warehouse, contract, arguments.batch_id)
        return
    warnings = warning_counts(warehouse, contract, arguments.batch_id)
    record = RunRecord(
        batch_id=arguments.batch_id,
        dataset=contract.name,
        source_file=arguments.source_file,
        task=TASK,
        # The run began with the stage task; its start is the batch's `_ingested_at`.
        started_at=counts.started_at or started_at,
        ended_at=datetime.now(UTC),
        status=SUCCEEDED,
        rows_read=counts.read,
        rows_rejected=counts.rejected,
        rows_superseded=counts.superseded,
        rows_inserted=counts.inserted,
        rows_updated=counts.updated,
        rows_unchanged=counts.unchanged,
        rows_tied=counts.tied,
        details=_details(counts, warnings),
        run_id=arguments.run_id,
        attempt=next_attempt(warehouse, TASK, arguments.run_id),
    )
    append_run(spark, warehouse, record)
    _release(warehouse, contract, arguments.batch_id)
    print(
        f"{TASK}: batch {arguments.batch_id} of {contract.name}: {counts.inserted} inserted, {counts.updated} updated, "
        f"{counts.unchanged} unchanged, {counts.superseded} superseded within the file, {counts.rejected} rejected "
        f"of {counts.read} read ({warehouse.description})"
    )
    if counts.versions is not None:
        print(
            f"{TASK}: versions: {counts.versions.inserted} inserted, {counts.versions.updated} updated (a new version "
            "re-bounds the one before it)"
        )
    for rule, flagged in sorted(warnings.items()):
        print(
            f"{TASK}: WARNING: {flagged} rows of the file failed the warn check {rule}; they were loaded, not rejected"
        )
    if counts.tied:
        print(
            f"{TASK}: {counts.tied} rows have the same {contract.sequence_by} as the target's row of their key but "
            "other content; the greater content won, as it would in any order of the files"
        )


def _details(counts: TargetCounts, warnings: dict[str, int]) -> str | None:
    """SCD2: what the MERGE did to the versions, in the words (and the place) the batch job logs them; and how
    many rows each `warn` check flagged (they merged, and the stage rows that named the checks are released)."""
    details: dict[str, object] = {}
    if counts.versions is not None:
        versions = counts.versions
        details["versions"] = {"inserted": versions.inserted, "updated": versions.updated, "deleted": versions.deleted}
    if warnings:
        details["warnings"] = dict(sorted(warnings.items()))
    return json.dumps(details) if details else None


def _release(warehouse: Warehouse, contract: Contract, batch_id: str) -> None:
    try:
        release_stage(warehouse, contract, batch_id)
    except Exception as exc:
        # The merge and its log row are committed, so the run succeeded. Rows left behind cost only
        # storage: reads skip other batches' files, and a re-run of this batch replaces them.
        print(f"{TASK}: could not delete the stage rows of batch {batch_id}: {exc}", file=sys.stderr)


def _already_merged(
    spark: SparkSession, warehouse: Warehouse, contract: Contract, arguments: TaskArguments, started_at: datetime
) -> bool:
    """Whether an empty stage is a batch this task merged before (a retry or repair after its stage rows
    were released); then the attempt is logged SKIPPED, so that the log does not count the batch again
    as a run of zeros. An empty stage of a batch never merged whose stage_load failed last fails this
    task too; otherwise it is an empty file, or a batch id stage_load did not stage: said, and logged as
    a run of zeros."""
    merged_at = succeeded_at(warehouse, arguments.batch_id, contract.name, TASK)
    if merged_at is None:
        # A repair that runs this task alone after the stage failed (a file refused for its bad rows, a
        # wrong header) must not log the batch as loaded: it fails, with the stage's reason.
        refused = newest_failure(warehouse, arguments.batch_id, contract.name, STAGE_TASK)
        if refused is not None:
            raise TargetLoadError(
                f"batch {arguments.batch_id} of {contract.name} has nothing staged: its stage_load failed "
                f"({refused}). Run both tasks again once the file or the contract is fixed"
            )
        print(
            f"{TASK}: batch {arguments.batch_id} of {contract.name} has no staged row: an empty file, or a batch id "
            "stage_load did not stage (check --batch-id)"
        )
        return False
    why = f"batch already merged by the {TASK} that ended at {merged_at.isoformat()}; its stage rows were released"
    _log_skipped(spark, warehouse, contract, arguments, started_at, why)
    return True


def _logged_since_staged(
    spark: SparkSession,
    warehouse: Warehouse,
    contract: Contract,
    arguments: TaskArguments,
    started_at: datetime,
    staged_at: datetime | None,
) -> bool:
    """Whether a MERGE that changed nothing retries an attempt that merged and logged these very stage rows,
    then died before releasing them (killed at its timeout; `retry_on_timeout`): logged SKIPPED, so that
    the log does not show the batch's newest run as one of zeros. A batch staged again after it was
    logged (a replay) is a run of its own, which changes nothing and says so."""
    merged_at = succeeded_at(warehouse, arguments.batch_id, contract.name, TASK)
    if merged_at is None or staged_at is None or instant(merged_at) < instant(staged_at):
        return False
    why = f"these stage rows were merged and logged by the {TASK} that ended at {merged_at.isoformat()}"
    _log_skipped(spark, warehouse, contract, arguments, started_at, why)
    return True


def _log_skipped(
    spark: SparkSession,
    warehouse: Warehouse,
    contract: Contract,
    arguments: TaskArguments,
    started_at: datetime,
    why: str,
) -> None:
    record = RunRecord(
        batch_id=arguments.batch_id,
        dataset=contract.name,
        source_file=arguments.source_file,
        task=TASK,
        started_at=started_at,
        ended_at=datetime.now(UTC),
        status=SKIPPED,
        details=json.dumps({"why": why}),
        run_id=arguments.run_id,
        attempt=next_attempt(warehouse, TASK, arguments.run_id),
    )
    append_run(spark, warehouse, record)
    print(f"{TASK}: {why}: nothing to merge again")


def main(argv: list[str] | None = None) -> int:
    return run_task(TASK, sys.argv[1:] if argv is None else argv, merge_batch)


if __name__ == "__main__":
    sys.exit(main())
