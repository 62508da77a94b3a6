"""Entry point of the `stage_load` task: check the arguments, then stage one file."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

if __package__ in (None, "") and "__file__" in globals():
    # Run as a file (Databricks `spark_python_task`, or `python spark_jobs/stage_load.py`): import the
    # package from the repository (or the installed wheel), not sibling modules from this folder.
    # Serverless is reported to exec() the file's code with no `__file__` (databrickslabs/ontos#685):
    # there the wheel in the job's environment is on the path already, and the file's folder is not.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pyspark.sql import SparkSession

from filegate.contracts import Contract
from spark_jobs.processing_log import CountedFailure
from spark_jobs.stage import STAGE_TASK, Batch, StageCounts, rejects_table, stage_file
from spark_jobs.target import refuse_batch_job_settings, release_stage
from spark_jobs.task import TaskArguments, run_task
from spark_jobs.warehouse import Warehouse

TASK = STAGE_TASK


def stage(
    spark: SparkSession, warehouse: Warehouse, contract: Contract, arguments: TaskArguments, started_at: datetime
) -> None:
    """Stage the file and say what happened."""
    refuse_batch_job_settings(contract)
    batch = Batch(arguments.dataset, arguments.batch_id, arguments.source_file, started_at)
    counts = stage_file(spark, warehouse, contract, arguments.source_path, batch)
    print(
        f"{TASK}: batch {batch.batch_id} of {contract.name}: {counts.read} rows read, {counts.staged} staged, "
        f"{counts.rejected} rejected ({warehouse.description})"
    )
    try:
        refuse_bad_share(contract, counts)
    except TooManyBadRows:
        # Nothing of the file may merge, also by a repair that runs target_load alone: the rows leave the stage.
        release_stage(warehouse, contract, batch.batch_id)
        raise


class TooManyBadRows(CountedFailure):
    """More of the file's rows broke a rule than the contract's max_bad_row_ratio allows."""


def refuse_bad_share(contract: Contract, counts: StageCounts) -> None:
    """Fail the task when the whole file breaks `max_bad_row_ratio`, as the function's sample would have.

    The function judges a bounded sample: a file whose bad rows begin past it (an export that changed
    mid-file) is archived, and only the full read sees them. The rejects are written by then, each
    with its reason; `target_load` depends on this task and the stage is released: none of the file
    reaches the target.
    """
    if contract.too_many_bad_rows(counts.rejected, counts.read):
        raise TooManyBadRows(
            f"{counts.rejected} of {counts.read} rows of the file broke a rule, more than {contract.name}'s "
            f"max_bad_row_ratio ({contract.bad_row_limit}) allows: nothing of it is merged. Each bad row "
            f"is in {rejects_table(contract)} with its reason; send a corrected file",
            counts.read,
            counts.rejected,
        )


def main(argv: list[str] | None = None) -> int:
    return run_task(TASK, sys.argv[1:] if argv is None else argv, stage)


if __name__ == "__main__":
    sys.exit(main())
