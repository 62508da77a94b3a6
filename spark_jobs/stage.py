"""The stage task's work: one file into `<dataset>_stage` and `<dataset>_rejects`, for one batch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePosixPath

from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from filegate import tables
from filegate.contracts import BUSINESS_DATE, Contract
from filegate.errors import ContractError, FilegateError
from spark_jobs.columns import (
    BATCH_ID,
    INGESTED_AT,
    LINEAGE,
    RAW_LINE,
    REASON,
    REJECTED_BY,
    RULES,
    SOURCE_FILE,
    rejects_schema,
    stage_schema,
    stage_table_schema,
)
from spark_jobs.contract_sql import derived_column, first_to_raise, is_data_exception, spark_message
from spark_jobs.row_rules import apply_row_rules, failed_check
from spark_jobs.validation import opens_a_record, parse_fields, read_lines, split_rows
from spark_jobs.warehouse import Warehouse, batch_predicate

# The ingest job's task that stages a file, as processing_log names it.
STAGE_TASK = "stage_load"


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


class RowExpressionFailed(FilegateError):
    """A derived column or a check of the contract raised on a row (ANSI SQL: a cast, an overflow, a division by
    zero): the file cannot be staged until the expression is fixed."""


def _which_expression_raised(
    checked: DataFrame, contract: Contract, business_date: date | None, batch: Batch
) -> str | None:
    """The error for a data exception in the stage's write, naming the contract's expression that raised; None
    when no expression raises alone (the original error then stands).

    The reading and the column rules are run first, alone (they tolerate any text: a raise there is not
    the contract's expression); then each derived column (in order, as each may read the ones before
    it) and each check, as the stage runs them, until one raises. Run only after the write failed.
    """
    file = PurePosixPath(batch.source_file).name
    rows = checked.select("*", F.lit(business_date).cast("date").alias(BUSINESS_DATE))
    passed = F.col(REASON).isNull()
    advice = "every value its columns' rules accept"
    suspects: list[tuple[tuple[str, str] | None, DataFrame]] = [(None, checked.select(F.count_if(passed)))]
    for derived in contract.derived:
        rows = rows.select("*", derived_column(contract, derived, only_where=passed))
        what = f"derived column {derived.name} ({_shown(contract, derived.expr or 'bands')})"
        suspects.append(((what, advice), rows.select(F.count(derived.name))))
    advice = "every row of the file's shape, also one a column rule rejects (an unreadable value is NULL)"
    for check in contract.checks:
        what = f"check {check.name} ({_shown(contract, check.expr)})"
        suspects.append(((what, advice), rows.select(F.count(failed_check(contract, check)))))
    raised = first_to_raise(suspects)
    if raised is None or raised[0] is None:  # none raised alone, or not the contract's expression
        return None
    (what, advice), found = raised[0], raised[1]
    return (
        f"{contract.name}: the {what} raised on a row of {file}: {spark_message(found)} Nothing of the file was "
        f"staged; it stays archived. Make the expression hold for {advice} (try_divide, try_cast, a wider "
        "decimal, or a column rule that rejects such a row first), then run the file's job, or the batch, again."
    )


def _shown(contract: Contract, expr: str) -> str:
    """An expression as written, and as run when it has parameters."""
    resolved = contract.sql(expr)
    return expr if resolved == expr else f"{expr}, here {resolved}"


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
    stage, rejects = stage_table(contract), rejects_table(contract)
    warehouse.ensure_table(stage, stage_table_schema(contract), partition_by=(BATCH_ID,))
    warehouse.ensure_table(rejects, rejects_schema())
    read, rejected, opened = _stage_rows(spark, warehouse, contract, source_path, batch, business_date, joined=False)
    if opened and not contract.multiline_records:
        # A quoted field runs over a line break: read as lines, the line after the break made up a row of its
        # own. Staged again, the rare file that has such a line, with each line that opens a field joined to
        # the next that closes it: one bad row, as the function's validator counts it. The stage's partition
        # of the batch is replaced again.
        read, rejected, _ = _stage_rows(spark, warehouse, contract, source_path, batch, business_date, joined=True)
    # Both tables are replaced even when the batch has no rejects now: a corrected re-run must not
    # leave the previous attempt's rows behind (without rejects a DELETE does that, and commits
    # nothing when there is nothing to delete, the usual case). They are two commits; a crash between
    # them leaves the batch half staged, which nothing reads (the merge runs only after this task
    # succeeded), and the task's retry replaces both again from the same file: the pair converges,
    # nothing doubled (tests/spark_jobs/test_load_scenarios.py kills a stage task between the two).
    # Only the stage's own rejects of the batch: a pipeline's `validate` puts the rows it quarantined
    # beside them (`_rejected_by = 'validate'`) and replaces those itself, so a stage run again alone
    # (a repair) keeps them. Rows from before the column was added are the stage's.
    own = f"{batch_predicate(batch.batch_id)} AND ({REJECTED_BY} IS NULL OR {REJECTED_BY} = 'stage')"
    if rejected:
        bad = warehouse.read_batch(stage, batch.batch_id).where(F.col(REASON).isNotNull())
        columns = (REASON, RULES, RAW_LINE, *LINEAGE, F.lit("stage").alias(REJECTED_BY))
        warehouse.replace_where(rejects, bad.select(*columns), own)
    else:
        warehouse.delete_where(rejects, own)
    return StageCounts(staged=read - rejected, rejected=rejected)


def _stage_rows(
    spark: SparkSession,
    warehouse: Warehouse,
    contract: Contract,
    source_path: str,
    batch: Batch,
    business_date: date | None,
    *,
    joined: bool,
) -> tuple[int, int, int]:
    """Check the file's rows and write them to the stage's partition of the batch, each with its verdict; the
    rows read and rejected, and the lines that open a quoted field they do not close (`opens_a_record`)."""
    split = split_rows(parse_fields(read_lines(spark, source_path, contract, joined=joined), contract), contract)
    checked = apply_row_rules(split.checked, contract, business_date)
    rows = with_lineage(checked, batch).select(
        *stage_schema(contract).fieldNames(),
        REASON,
        RULES,
        # Only a rejected row needs its raw text; a good row would carry it along for nothing.
        F.when(F.col(REASON).isNotNull(), F.col(RAW_LINE)).alias(RAW_LINE),
    )
    # The file is read and checked once: every row goes to the stage with its verdict, in one write,
    # and the rejects are copied from the batch's stage rows. Splitting the checked rows into two
    # writes instead would run the whole plan twice (serverless Spark Connect has no cache), and a
    # filter on the verdict evaluates the rules again beside the projection that keeps them.
    # The stage holds only batches in flight, each replaced and later released whole: partitioned by
    # batch, its replaces and deletes drop a folder's files from the log without scanning any rows,
    # and concurrent batches write disjoint partitions.
    stage = stage_table(contract)
    try:
        warehouse.replace_batch(stage, rows, batch.batch_id)
    except PySparkException as exc:
        named = (
            _which_expression_raised(split.checked, contract, business_date, batch) if is_data_exception(exc) else None
        )
        if named is None:
            raise
        raise RowExpressionFailed(named) from exc
    # The counts from the rows just written (one column of one partition): the newest replace of the
    # batch is this one, or a concurrent attempt at the same batch from the same file. A line that opens a
    # quoted field is not well-formed, so rejected, and its raw text kept.
    found = (
        warehouse.read_batch(stage, batch.batch_id)
        .agg(
            F.count(F.lit(1)).alias("read"),
            F.count(F.col(REASON)).alias("rejected"),
            F.count_if(opens_a_record(F.col(RAW_LINE), contract.delimiter)).alias("opened"),
        )
        .first()
    )
    if found is None:
        return 0, 0, 0
    return int(found["read"]), int(found["rejected"]), int(found["opened"] or 0)


def staged_rows(warehouse: Warehouse, contract: Contract, batch_id: str) -> DataFrame:
    """The batch's good staged rows (`stage_schema`): what every task after the stage reads."""
    return staged_good(warehouse.read_batch(stage_table(contract), batch_id), contract)


def staged_good(stage: DataFrame, contract: Contract) -> DataFrame:
    """The good rows of stage rows (`stage_table_schema`), with the columns of `stage_schema`."""
    return stage.where(F.col(REASON).isNull()).select(*stage_schema(contract).fieldNames())
