"""The `processing_log` table: one row per job run, written by the task that ends the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from filegate.tables import PROCESSING_LOG
from spark_jobs.warehouse import Warehouse

TABLE = PROCESSING_LOG
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"

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
    ]
)


@dataclass(frozen=True)
class RunRecord:
    """One run's outcome; counts the failing task never reached stay None."""

    batch_id: str
    dataset: str
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


def append_run(spark: SparkSession, warehouse: Warehouse, record: RunRecord) -> None:
    """Append the run's row: a blind append, which concurrent runs (of any dataset) can all commit."""
    values = asdict(record)
    row = spark.createDataFrame([tuple(values[name] for name in SCHEMA.fieldNames())], SCHEMA)
    warehouse.ensure_table(TABLE, SCHEMA)
    warehouse.append(TABLE, row)
