"""The stage task's work: one file into `<dataset>_stage` and `<dataset>_rejects`, for one batch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePosixPath

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from filegate import tables
from filegate.contracts import BUSINESS_DATE, Contract
from filegate.errors import ContractError
from spark_jobs.columns import (
    BATCH_ID,
    INGESTED_AT,
    RAW_LINE,
    REASON,
    REJECTED_BY,
    RULES,
    SOURCE_FILE,
    rejects_schema,
    stage_schema,
)
from spark_jobs.row_rules import apply_row_rules
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
    return tables.stage_table(contract.name)


def rejects_table(contract: Contract) -> str:
    return tables.rejects_table(contract.name)


def with_lineage(rows: DataFrame, batch: Batch) -> DataFrame:
    """Tag rows with their batch, file and the run's start (one value per run, not per row)."""
    return rows.select(
        "*",
        F.lit(batch.batch_id).alias(BATCH_ID),
        F.lit(batch.source_file).alias(SOURCE_FILE),
        F.lit(batch.started_at).cast("timestamp").alias(INGESTED_AT),
    )


def business_date_of(contract: Contract, source_file: str) -> date | None:
    """The business date in the file's name (the archive keeps the uploaded name, perhaps version-qualified)."""
    name = PurePosixPath(source_file.rstrip("/")).name
    for candidate in (name, re.sub(r"__v[0-9a-f]+(?=\.[^.]*$|$)", "", name)):
        try:
            return contract.business_date(candidate)
        except ValueError:
            continue
    return None


def stage_file(
    spark: SparkSession, warehouse: Warehouse, contract: Contract, source_path: str, batch: Batch
) -> StageCounts:
    """Read, check and stage one file; a re-run of the batch replaces exactly its own rows."""
    business_date = business_date_of(contract, batch.source_file) or business_date_of(contract, source_path)
    if business_date is None and (contract.checks or contract.sequence_by == BUSINESS_DATE):
        raise ContractError(
            f"{contract.name}: the file name {PurePosixPath(batch.source_file).name!r} carries no business date "
            f"({contract.file_pattern}), which this contract's checks or sequence need"
        )
    split = split_rows(parse_fields(read_lines(spark, source_path, contract), contract), contract)
    checked = apply_row_rules(split.checked, contract, business_date)
    rejected = F.col(REASON).isNotNull()
    rows = with_lineage(checked, batch).select(
        *stage_schema(contract).fieldNames(),
        REASON,
        RULES,
        # Only a rejected row needs its raw text; a good row would carry it along for nothing.
        F.when(rejected, F.col(RAW_LINE)).alias(RAW_LINE),
        F.lit("stage").alias(REJECTED_BY),
        rejected.alias(_REJECTED),
    )
    # Both tables are replaced even when the batch has no rows for them now: a corrected re-run
    # must not leave the previous attempt's rows behind. They are two commits; a crash between them
    # leaves the batch half staged until the task's retry replaces both (see replace_batch_split).
    # The stage holds only batches in flight, each replaced and later released whole: partitioned by
    # batch, its replaces and deletes drop a folder's files from the log without scanning any rows,
    # and concurrent batches write disjoint partitions.
    warehouse.ensure_table(stage_table(contract), stage_schema(contract), partition_by=(BATCH_ID,))
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
