"""The `processing_log` table: one row per task, dataset or table, and attempt.

The ingest job writes one row per run (its last task); the batch job one per task and member. Columns
added since the first release are appended at the end and nullable: `Warehouse.ensure_table` adds
them to an existing table in place (ALTER TABLE ADD COLUMNS), so old rows and readers keep working.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

from pyspark.errors import RetriesExceeded
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, IntegerType, LongType, StringType, StructField, StructType, TimestampType

from filegate.errors import FilegateError
from filegate.tables import PROCESSING_LOG
from spark_jobs.warehouse import Warehouse, driver_rows

TABLE = PROCESSING_LOG
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"

SCHEMA = StructType(
    [
        StructField("batch_id", StringType()),
        StructField("dataset", StringType()),
        StructField("source_file", StringType()),
        StructField("task", StringType()),
        StructField("rows_read", LongType()),
        StructField("rows_rejected", LongType()),
        StructField("rows_superseded", LongType()),
        StructField("rows_inserted", LongType()),
        StructField("rows_updated", LongType()),
        StructField("rows_unchanged", LongType()),
        StructField("rows_tied", LongType()),
        StructField("started_at", TimestampType()),
        StructField("ended_at", TimestampType()),
        StructField("status", StringType()),
        StructField("error", StringType()),
        # The batch job's columns (issue 16).
        StructField("run_id", LongType()),
        StructField("attempt", IntegerType()),
        StructField("pipeline", StringType()),
        StructField("business_date", DateType()),
        StructField("table_name", StringType()),
        StructField("rows_quarantined", LongType()),
        StructField("rows_deleted", LongType()),
        StructField("details", StringType()),
    ]
)


@dataclass(frozen=True)
class RunRecord:
    """One run's outcome; counts the failing task never reached stay None."""

    batch_id: str
    dataset: str | None
    source_file: str
    task: str
    started_at: datetime
    ended_at: datetime
    status: str
    rows_read: int | None = None
    rows_rejected: int | None = None
    rows_superseded: int | None = None
    rows_inserted: int | None = None
    rows_updated: int | None = None
    rows_unchanged: int | None = None
    rows_tied: int | None = None
    error: str | None = None
    run_id: int | None = None
    attempt: int | None = None
    pipeline: str | None = None
    business_date: date | None = None
    table_name: str | None = None
    rows_quarantined: int | None = None
    rows_deleted: int | None = None
    details: str | None = None


class CountedFailure(FilegateError):
    """A task's failure after it counted the rows: its FAILED row keeps how many were read and rejected."""

    def __init__(self, message: str, rows_read: int, rows_rejected: int) -> None:
        super().__init__(message)
        self.rows_read = rows_read
        self.rows_rejected = rows_rejected


# Spark Connect's errors carry the server's Java stack trace in their message (the server sends it, and
# the client shows it unless told not to): hundreds of `at org.apache...` lines after Spark's own words.
_JVM_STACKTRACE = "\n\nJVM stacktrace:\n"


def error_text(exc: BaseException) -> str:
    """What the log's `error` keeps of an exception: its type and message, cut to a readable length."""
    text = f"{type(exc).__name__}: {without_jvm_stacktrace(str(exc))}"
    if isinstance(exc, RetriesExceeded) and exc.__cause__ is not None:
        # Spark Connect's client gives up on a server it cannot reach saying only that its retries ran out.
        text += f" The last attempt: {_rpc_text(exc.__cause__)}"
    return text[:4000]


def _rpc_text(exc: BaseException) -> str:
    """A gRPC error's status and details (`UNAVAILABLE: ... Connection refused`), else its type and message."""
    code, details = getattr(exc, "code", None), getattr(exc, "details", None)
    if callable(code) and callable(details):
        return f"{getattr(code(), 'name', code())}: {details()}"
    return f"{type(exc).__name__}: {exc}"


def without_jvm_stacktrace(message: str) -> str:
    """A Spark error's message without the server's Java stack trace that Spark Connect appends to it."""
    return message.split(_JVM_STACKTRACE, 1)[0]


def print_failure(exc: BaseException) -> None:
    """Print an exception's traceback on stderr, each message without the Java stack trace Spark Connect adds,
    so that the log's last lines (what a job run reports as its error) say what went wrong."""
    for chunk in traceback.format_exception(exc):
        kept = without_jvm_stacktrace(chunk)
        print(kept if kept == chunk else f"{kept}\n", end="", file=sys.stderr)


def append_run(spark: SparkSession, warehouse: Warehouse, record: RunRecord) -> None:
    """Append the run's row: a blind append, which concurrent runs (of any dataset) can all commit."""
    append_runs(spark, warehouse, [record])


def append_runs(spark: SparkSession, warehouse: Warehouse, records: Sequence[RunRecord]) -> None:
    """Append a task's rows in one commit (each Delta commit costs seconds); a blind append never conflicts."""
    rows = [tuple(asdict(record)[name] for name in SCHEMA.fieldNames()) for record in records]
    warehouse.ensure_table(TABLE, SCHEMA)
    warehouse.append(TABLE, driver_rows(spark, rows, SCHEMA))


def append_failing_runs(spark: SparkSession, warehouse: Warehouse, records: Sequence[RunRecord], task: str) -> None:
    """Append the rows of a task on its failure's way out: a log that cannot be written is said on stderr,
    never raised, so that it does not take the place of the failure."""
    try:
        append_runs(spark, warehouse, records)
    except Exception as exc:
        print(f"{task}: could not write processing_log either: {error_text(exc)}", file=sys.stderr)


def _task_of(batch_id: str, dataset: str, task: str) -> Column:
    """The log rows of a task of a batch and dataset."""
    return (F.col("batch_id") == batch_id) & (F.col("dataset") == dataset) & (F.col("task") == task)


def succeeded_at(warehouse: Warehouse, batch_id: str, dataset: str, task: str) -> datetime | None:
    """When the newest SUCCEEDED row of a task of a batch and dataset ended; None when there is none (or no log)."""
    log = warehouse.read_if_exists(TABLE)
    if log is None:
        return None
    succeeded = log.where(_task_of(batch_id, dataset, task) & (F.col("status") == SUCCEEDED))
    found = succeeded.agg(F.max("ended_at").alias("ended")).first()
    return None if found is None else found["ended"]


def newest_failure(warehouse: Warehouse, batch_id: str, dataset: str, task: str) -> str | None:
    """The error of the newest row of a task of a batch and dataset when that row is FAILED; None otherwise."""
    log = warehouse.read_if_exists(TABLE)
    if log is None:
        return None
    rows = log.where(_task_of(batch_id, dataset, task))
    newest = rows.orderBy(F.col("ended_at").desc()).select("status", "error").first()
    if newest is None or newest["status"] != FAILED:
        return None
    return str(newest["error"] or "no error recorded")


def next_attempt(warehouse: Warehouse, task: str, run_id: int | None) -> int | None:
    """This task's attempt in its run: 1, then one more per retry (Databricks retries a task within the same
    run id), counted from the rows the run's earlier attempts logged; None without a run id."""
    if run_id is None:
        return None
    # A log an earlier release created may lack `run_id` and `attempt`: migrated first, as every writer does.
    warehouse.ensure_table(TABLE, SCHEMA)
    log = warehouse.read(TABLE)
    mine = (F.col("task") == task) & (F.col("run_id") == run_id)
    found = log.where(mine).agg(F.max("attempt").alias("last")).first()
    last = None if found is None else found["last"]
    return 1 if last is None else int(last) + 1


def attempt_or_none(warehouse: Warehouse, task: str, run_id: int | None) -> int | None:
    """`next_attempt` on a failure's way out: a log that cannot be read leaves the attempt empty, never raises."""
    try:
        return next_attempt(warehouse, task, run_id)
    except Exception as exc:
        print(f"{task}: could not read processing_log for the attempt: {error_text(exc)}", file=sys.stderr)
        return None
