"""Entry point of the batch job's `stage_members` task: stage every member file of the sealed batch."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    # Run as a file (Databricks `spark_python_task`): import the package, not sibling modules.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from spark_jobs.batch import BatchContext, run_batch_task
from spark_jobs.processing_log import RunRecord, append_runs
from spark_jobs.stage import Batch, stage_file, stage_table

TASK = "stage_members"


def stage_members(context: BatchContext) -> None:
    """Stage each member into `<d>_stage` / `<d>_rejects`, replacing the batch's rows, one log row per member.

    Each member is staged with the ingest job's own `stage_file`, so a member file is read and checked
    exactly as a standalone file of that dataset would be.
    """
    records: list[RunRecord] = []
    for member in context.manifest.members:
        contract = context.contract(member.dataset)
        started = datetime.now(UTC)
        batch = Batch(member.dataset, context.manifest.batch_id, member.uri, context.started_at)
        counts = stage_file(context.spark, context.warehouse, contract, member.read_path, batch)
        records.append(
            context.record(
                TASK,
                dataset=member.dataset,
                source_file=member.uri,
                table_name=stage_table(contract),
                started_at=started,
                rows_read=counts.read,
                rows_rejected=counts.rejected,
            )
        )
        print(f"{TASK}: {member.dataset}: {counts.read} rows read, {counts.staged} staged, {counts.rejected} rejected")
    append_runs(context.spark, context.warehouse, records)


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, stage_members)


if __name__ == "__main__":
    sys.exit(main())
