"""Entry point of the batch job's `stage_members` task: stage every member file of the sealed batch.

The members are staged at once, in threads sharing the Spark session. Each member writes its own two
tables, so their Delta commits never conflict, and a member is a handful of statements between which
the cores wait (for the driver to plan, read a Delta log, commit; for a stage's last task), which
another member's statements then fill. Measured gains and costs (time, CPU, peak memory) are in
bench/results/batch.md, session 22; merging the targets and building the derived tables at once as
well gained nothing there, so they stay one at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

if __package__ in (None, "") and "__file__" in globals():
    # Run as a file (Databricks `spark_python_task`): import the package, not sibling modules.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from pyspark.sql import SparkSession
from pyspark.sql.utils import is_remote
from pyspark.util import inheritable_thread_target

from spark_jobs.batch import FIRST_TASK, BatchContext, Member, run_batch_task, staging_details
from spark_jobs.processing_log import RunRecord, append_failing_runs, append_runs, print_failure
from spark_jobs.stage import Batch, stage_file, stage_table

TASK = FIRST_TASK
# A pipeline has a handful of members (the e-commerce one five): all of them at once. Each holds its own
# plans and write buffers while it runs, so the peak memory can grow with them (bench/results/batch.md).
MAX_AT_ONCE = 8

T = TypeVar("T")
R = TypeVar("R")


def stage_members(context: BatchContext) -> None:
    """Stage each member into `<d>_stage` / `<d>_rejects`, replacing the batch's rows, one log row per member.

    Each member is staged with the ingest job's own `stage_file`, so a member file is read and checked
    exactly as a standalone file of that dataset would be. A member that fails fails the task, after
    the others have ended. Every member gets its row, in one commit: SUCCEEDED with its counts, or
    FAILED with its error, so the log says which members are staged and which one to fix.
    """

    def stage(member: Member) -> tuple[RunRecord, Exception | None]:
        contract = context.contract(member.dataset)
        started = datetime.now(UTC)
        # The revision, on success and failure alike: a later run of an older revision is refused by it.
        fields = {
            **context.member_fields(member.dataset, stage_table(contract)),
            "details": staging_details(context.manifest.revision),
        }
        try:
            batch = Batch(member.dataset, context.manifest.batch_id, member.uri, context.started_at)
            counts = stage_file(context.spark, context.warehouse, contract, member.read_path, batch)
        except Exception as exc:
            return context.failed(TASK, exc, started_at=started, **fields), exc
        print(f"{TASK}: {member.dataset}: {counts.read} rows read, {counts.staged} staged, {counts.rejected} rejected")
        return context.record(
            TASK, started_at=started, rows_read=counts.read, rows_rejected=counts.rejected, **fields
        ), None

    # The members' threads do not race to create the Unity Catalog schema on a first run: reading the
    # task's progress from processing_log (`batch.read_progress`) created it before.
    outcomes = each_at_once(context.spark, context.manifest.members, stage)
    records, failures = [record for record, _ in outcomes], [exc for _, exc in outcomes if exc is not None]
    if failures:
        append_failing_runs(context.spark, context.warehouse, records, TASK)
        raise_first(failures)
    append_runs(context.spark, context.warehouse, records)


def each_at_once(spark: SparkSession, items: Sequence[T], work: Callable[[T], R]) -> list[R]:
    """`work(item)` for every item, in threads sharing the Spark session; the results in the items' order.

    Each thread carries the caller's Spark job properties and tags (Databricks files a task's Spark jobs
    under them). Every item's work ends before this returns, failed or not: a failure is raised (the
    first in the items' order; the others' tracebacks are printed) only once nothing is still writing.
    """
    carry: object = inheritable_thread_target(spark)
    # With PYSPARK_PIN_THREAD=false there is nothing to carry, and pyspark hands back the session itself.
    inherited = carry(_own_properties(spark, work)) if callable(carry) else work
    with ThreadPoolExecutor(max_workers=max(1, min(len(items), MAX_AT_ONCE)), thread_name_prefix=TASK) as pool:
        futures = [pool.submit(inherited, item) for item in items]
    raise_first([exc for future in futures if (exc := future.exception()) is not None])
    return [future.result() for future in futures]


def _own_properties(spark: SparkSession, work: Callable[[T], R]) -> Callable[[T], R]:
    """`work` on a copy of the properties pyspark carried into the thread, not on the object itself.

    pyspark's `inheritable_thread_target` sets one Properties object, copied once from the caller, as
    every thread's local properties. Spark keeps a query's execution ids there (set when it starts,
    removed when it ends), so one member's query could remove the id another's was about to read
    (`NumberFormatException: Cannot parse null string`, seen now and then in stage_members). Each
    thread copies the object before its first query; nothing ever changes the shared one.
    """

    def own(item: T) -> R:
        if not is_remote():  # over Spark Connect the server keeps each query's properties
            context = spark.sparkContext._jsc.sc()
            context.setLocalProperties(context.getLocalProperties().clone())
        return work(item)

    return own


def raise_first(failures: Sequence[BaseException]) -> None:
    """Raise the first failure, once the others' tracebacks are printed (nothing is lost from stderr)."""
    for other in failures[1:]:
        print(f"{TASK}: another member failed too:", file=sys.stderr)
        print_failure(other)
    if failures:
        raise failures[0]


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, stage_members)


if __name__ == "__main__":
    sys.exit(main())
