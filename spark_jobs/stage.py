"""The stage task's work: one file into `<dataset>_stage` and `<dataset>_rejects`, for one batch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from filegate.contracts import Contract
from spark_jobs.columns import BATCH_ID, INGESTED_AT, RAW_LINE, REASON, SOURCE_FILE, rejects_schema, stage_schema
from spark_jobs.validation import parse_fields, read_lines, split_rows
from spark_jobs.warehouse import BatchPart, Warehouse

_REJECTED = "_rejected"


@dataclass(frozen=True)
class Batch:
    """One run's identity: which dataset, which batch, which file (as recorded), since when."""

    dataset: str
    batch_id: str
    source_file: str
    started_at: datetime


@dataclass(frozen=True)
class StageCounts:
    """How a file's rows were split."""

    staged: int
    rejected: int

    @property
    def read(self) -> int:
        return self.staged + self.rejected


def stage_table(contract: Contract) -> str:
    return f"{contract.name}_stage"


def rejects_table(contract: Contract) -> str:
    return f"{contract.name}_rejects"


def with_lineage(rows: DataFrame, batch: Batch) -> DataFrame:
    """Tag rows with their batch, file and the run's start (one value per run, not per row)."""
    return rows.select(
        "*",
        F.lit(batch.batch_id).alias(BATCH_ID),
        F.lit(batch.source_file).alias(SOURCE_FILE),
        F.lit(batch.started_at).cast("timestamp").alias(INGESTED_AT),
    )


def stage_file(
    spark: SparkSession, warehouse: Warehouse, contract: Contract, source_path: str, batch: Batch
) -> StageCounts:
    """Read, check and stage one file; a re-run of the batch replaces exactly its own rows."""
    checked = split_rows(parse_fields(read_lines(spark, source_path, contract), contract), contract).checked
    rejected = F.col(REASON).isNotNull()
    rows = with_lineage(checked, batch).select(
        *stage_schema(contract).fieldNames(),
        REASON,
        # Only a rejected row needs its raw text; a good row would carry it along for nothing.
        F.when(rejected, F.col(RAW_LINE)).alias(RAW_LINE),
        rejected.alias(_REJECTED),
    )
    # Both tables are replaced even when the batch has no rows for them now: a corrected re-run
    # must not leave the previous attempt's rows behind.
    warehouse.ensure_table(stage_table(contract), stage_schema(contract))
    warehouse.ensure_table(rejects_table(contract), rejects_schema())
    staged, rejected_rows = warehouse.replace_batch_split(
        rows,
        _REJECTED,
        (
            BatchPart(stage_table(contract), tuple(stage_schema(contract).fieldNames())),
            BatchPart(rejects_table(contract), tuple(rejects_schema().fieldNames())),
        ),
        batch.batch_id,
    )
    return StageCounts(staged=staged, rejected=rejected_rows)
