"""Entry point of the batch job's `derive_tables` task: build the pipeline's derived tables (`[[tables]]`).

Runs after `merge_targets`, so `${current.d}` is the target with this batch merged. Each table is
built from its SQL, gets its segments' columns, `as_of_date` and `_batch_id`, and is written in one
statement that also checks its grain: a duplicate or NULL grain fails the write before it commits (a
join that fans out is a bug to stop, not to publish). `full` replaces the table in one commit,
`as_of` replaces the slice of this business date. A later table reads the earlier one as written.
Each table is its own commit: a failure midway leaves the earlier tables rebuilt and the task's
retry rebuilds them all, to the same rows.

Derived tables only move forward in time: when tables were already built as of a later business date
(a correction of an older day merged after a newer one), the full tables that read only targets and
other such tables are rebuilt as of that later date, so that they hold what the late batch merged; the
slices and whatever reads the batch's own rows stay as they are. Rebuilding as of the older date would
regress every full table, and an older slice of a series rebuilt from today's targets would mix in
days after it.
"""

from __future__ import annotations

import json
import operator
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import reduce
from pathlib import Path

if __package__ in (None, "") and "__file__" in globals():
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, MapType, NullType, StructType

from filegate.contracts import Contracts
from filegate.errors import FilegateError
from filegate.pipelines import Pipeline
from filegate.tables import AS_OF_DATE, PROCESSING_LOG
from spark_jobs.batch import (
    LAST_TASK,
    BatchContext,
    refuse_failed_merge,
    refuse_failed_validation,
    refuse_partly_staged,
    release_batch_stage,
    run_batch_task,
    skip_completed,
)
from spark_jobs.batch_merge import good_batch_rows
from spark_jobs.batch_validate import FAILURES, FAILURES_SCHEMA, RESULTS, RESULTS_SCHEMA
from spark_jobs.columns import BATCH_ID, IS_CURRENT, stage_schema, target_schema
from spark_jobs.contract_sql import first_line
from spark_jobs.cross_checks import Inputs, resolve_sql, target_rows
from spark_jobs.pipeline_rules import Checks, parse_checks
from spark_jobs.pipeline_tables import DerivedTable, parse_tables, table_params
from spark_jobs.processing_log import SCHEMA as LOG_SCHEMA
from spark_jobs.processing_log import (
    SKIPPED,
    SUCCEEDED,
    RunRecord,
    append_failing_runs,
    append_run,
    append_runs,
)
from spark_jobs.warehouse import Warehouse, driver_rows, is_conflict, sql_string

TASK = LAST_TASK
# The window count of the grain check: a name no derived table's SQL makes, dropped before the write.
_GRAIN_ROWS = "_filegate_grain_rows"
_FANS_OUT = "; its SQL joins something that fans out"
_NULL_GRAIN = "; its SQL leaves a grain column NULL (an outer join that found no match?)"
# What Delta refuses in a column name (without column mapping): `count(*)` or `Amount EUR` stops the write.
_NOT_IN_NAMES = " ,;{}()\n\t="
# The bare inputs `${validation_results}`, `${validation_failures}` and `${processing_log}`: this batch's rows
# of those tables.
_LOG_SCHEMAS = {RESULTS: RESULTS_SCHEMA, FAILURES: FAILURES_SCHEMA, PROCESSING_LOG: LOG_SCHEMA}


class GrainViolated(FilegateError):
    """A derived table's SQL gave two rows for one grain, or a NULL in it."""


class ColumnsRefused(FilegateError):
    """A derived table's SQL makes a column Delta cannot store (a name it refuses, a name twice, a NULL type), or
    one a segment adds; `problems` without the table's name, which the message leads with."""

    def __init__(self, table: str, problems: Sequence[str]) -> None:
        super().__init__(f"derived table {table}: " + "; ".join(problems))
        self.problems = tuple(problems)


def newest_built(context: BatchContext) -> date | None:
    """The latest business date this pipeline's derived tables were built as of (processing_log)."""
    log = context.warehouse.read_if_exists(PROCESSING_LOG)
    if log is None:
        return None
    built = log.where(
        (F.col("pipeline") == F.lit(context.pipeline.name))
        & (F.col("task") == F.lit(TASK))
        & (F.col("status") == F.lit(SUCCEEDED))
        & F.col("table_name").isNotNull()
    )
    found = built.agg(F.max("business_date").alias("newest")).first()
    return None if found is None else found["newest"]


def register_inputs(context: BatchContext, tables: Sequence[DerivedTable]) -> Inputs:
    """The inputs the tables name, and only those, as temporary views (derived tables are added as built)."""

    def read(kind: str, item: str) -> DataFrame:
        if kind in _LOG_SCHEMAS:
            return _this_batch(context, kind, _LOG_SCHEMAS[kind])
        contract = context.contract(item)
        if kind == "batch":
            return good_batch_rows(context, contract)
        # A dataset with no target yet (order_tracking in a shop that does not load it) reads as empty.
        rows = target_rows(context.warehouse, contract)
        return rows.where(F.col(IS_CURRENT)) if kind == "current" and contract.scd_type == 2 else rows

    return _named_inputs(Inputs(context.spark), tables, read, parse_checks(context.pipeline, context.contracts))


def _named_inputs(
    inputs: Inputs, tables: Sequence[DerivedTable], read: Callable[[str, str], DataFrame], checks: Checks
) -> Inputs:
    """Register what `read(kind, item)` gives for each input the tables name, and the pipeline's lookups."""
    for name in sorted(set().union(*(table.inputs() for table in tables))):
        kind, _, item = name.partition(".")
        if kind in ("current", "history", "batch") or name in _LOG_SCHEMAS:
            inputs.register(kind, item, read(kind, item))
    inputs.register_lookups(checks.lookups)
    return inputs


def _this_batch(context: BatchContext, table: str, schema: StructType) -> DataFrame:
    """This batch's rows of a log table (empty when the table does not exist yet)."""
    found = context.warehouse.read_if_exists(table)
    if found is None:
        return driver_rows(context.spark, [], schema)
    rows = found.where(F.col("batch_id") == F.lit(context.manifest.batch_id))
    return rows.select(*schema.fieldNames())


def table_rows(
    spark: SparkSession, table: DerivedTable, inputs: Inputs, params: Mapping[str, Any], as_of: date, batch_id: str
) -> DataFrame:
    """The table's rows: its SQL, then each segment's column, then the business date and batch (set by the job)."""
    rows = spark.sql(resolve_sql(table.sql, inputs, params, as_of))
    made = {column.lower() for column in rows.columns}
    # withColumn would replace the SQL's column without a word: with the bands' label (a grain column too), or
    # with the business date and batch, so that a table over a daily series (`SELECT as_of_date, ... FROM
    # ${table.series}`) had every row dated today and failed its grain as "fans out".
    replaced = [segment.column for segment in table.segments if segment.column in made]
    owned = [column for column in (AS_OF_DATE, BATCH_ID) if column in made]
    problems = []
    if replaced:
        problems.append(f"its SQL makes {', '.join(replaced)}, which a segment adds; name one of them otherwise")
    if owned:
        listed = ", ".join(owned)
        problems.append(
            f"its SQL makes {listed}, which the job adds to every row (the business date it builds the table as "
            f"of, the batch): name it otherwise (as_of_date AS day), or leave it out (SELECT * EXCEPT ({listed}))"
        )
    if problems:
        raise ColumnsRefused(table.name, problems)
    for segment in table.segments:
        rows = rows.withColumn(segment.column, F.expr(resolve_sql(segment.case_sql(), inputs, params, as_of)))
    return rows.withColumn(AS_OF_DATE, F.lit(as_of)).withColumn(BATCH_ID, F.lit(batch_id))


def table_problems(spark: SparkSession, pipeline: Pipeline, contracts: Contracts) -> list[str]:
    """Every derived table whose SQL or bands do not resolve, resolved against empty inputs of the right
    schemas (analysis only: no row is read), in build order; for `filegate check`."""
    tables = parse_tables(pipeline, contracts)

    def empty(kind: str, item: str) -> DataFrame:
        schema = _LOG_SCHEMAS.get(kind) or (stage_schema if kind == "batch" else target_schema)(contracts[item])
        return driver_rows(spark, [], schema)

    inputs = _named_inputs(Inputs(spark), tables, empty, parse_checks(pipeline, contracts))
    problems = []
    try:
        for table in tables:
            try:
                rows = table_rows(spark, table, inputs, table_params(pipeline), date.today(), "check")
                missing = [column for column in table.grain if column not in rows.columns]
                if missing:
                    problems.append(f"table {table.name}: grain names columns its SQL does not make: {missing}")
                schema = rows.schema
                problems.extend(f"table {table.name}: {problem}" for problem in column_problems(schema))
            except ColumnsRefused as exc:
                problems.extend(f"table {table.name}: {problem}" for problem in exc.problems)
                continue
            except Exception as exc:  # Spark's AnalysisException and ParseException share no narrower base
                problems.append(f"table {table.name}: {first_line(exc)}")
                continue
            inputs.register("table", table.name, driver_rows(spark, [], schema))
    finally:
        inputs.close()
    return problems


def column_problems(schema: StructType) -> list[str]:
    """What Delta refuses in a table's columns: a name with one of ` ,;{}()\\n\\t=` (an unnamed `count(*)`), a name
    twice ignoring case, a column of NULL type (`NULL AS note`: Delta leaves it out of the table unsaid)."""
    problems = []
    seen: set[str] = set()
    for field in schema.fields:
        if any(char in field.name for char in _NOT_IN_NAMES):
            problems.append(
                f"column {field.name!r}: Delta refuses a name with any of {_NOT_IN_NAMES!r}; give it an alias"
            )
        elif field.name.lower() in seen:
            problems.append(f"column {field.name!r}: its SQL makes it twice (ignoring case); give one an alias")
        seen.add(field.name.lower())
        if _has_void(field.dataType):
            problems.append(
                f"column {field.name!r} has no type (a bare NULL) and Delta would drop it; "
                "cast it, e.g. CAST(NULL AS string)"
            )
    return problems


def _has_void(data_type: DataType) -> bool:
    if isinstance(data_type, NullType):
        return True
    if isinstance(data_type, ArrayType):
        return _has_void(data_type.elementType)
    if isinstance(data_type, MapType):
        return _has_void(data_type.keyType) or _has_void(data_type.valueType)
    if isinstance(data_type, StructType):
        return any(_has_void(field.dataType) for field in data_type.fields)
    return False


def grain_checked(table: DerivedTable, rows: DataFrame) -> DataFrame:
    """`rows` with the grain check inside: writing a row whose grain repeats or holds a NULL fails the write.

    The check rides in the written `_batch_id` (a CASE that raises, or the batch id), so the statement
    that writes the table is the one that checks it, and fails before it commits: no second run of
    the SQL. A CASE evaluates only the branch a row takes, and a written column cannot be pruned.
    """
    missing = [column for column in table.grain if column not in rows.columns]
    if missing:
        raise GrainViolated(f"derived table {table.name}: its grain names columns its SQL does not make: {missing}")
    grain = ", ".join(table.grain)
    example = F.to_json(F.struct(*table.grain), {"ignoreNullFields": "false"})
    has_null = reduce(operator.or_, (F.col(column).isNull() for column in table.grain))
    shared = F.col(_GRAIN_ROWS)

    def refusal(*parts: Column) -> Column:
        return F.raise_error(F.concat(F.lit(f"derived table {table.name}: "), *parts))

    batch_id = (
        F.when(has_null, refusal(F.lit(f"a row has a NULL in its grain ({grain}), e.g. "), example, F.lit(_NULL_GRAIN)))
        .when(
            shared > 1,
            refusal(shared.cast("string"), F.lit(f" rows share one grain ({grain}), e.g. "), example, F.lit(_FANS_OUT)),
        )
        .otherwise(F.col(BATCH_ID))
    )
    counted = rows.withColumn(_GRAIN_ROWS, F.count(F.lit(1)).over(Window.partitionBy(*table.grain)))
    return counted.withColumn(BATCH_ID, batch_id).drop(_GRAIN_ROWS)


def grain_problem(table: DerivedTable, rows: DataFrame) -> str | None:
    """What is wrong with the table's grain, or None (a query of its own: run only once a write has failed)."""
    has_null = reduce(operator.or_, (F.col(column).isNull() for column in table.grain))
    grouped = rows.groupBy(*table.grain).agg(
        F.count(F.lit(1)).alias(_GRAIN_ROWS),
        F.max(has_null).alias("_null"),
        F.to_json(F.struct(*table.grain), {"ignoreNullFields": "false"}).alias("_example"),
    )
    found = grouped.agg(
        F.max(_GRAIN_ROWS).alias("most"),
        F.max_by("_example", F.col(_GRAIN_ROWS)).alias("shared"),
        F.sum(F.when(F.col("_null"), F.col(_GRAIN_ROWS)).otherwise(0)).alias("nulls"),
        F.max(F.when(F.col("_null"), F.col("_example"))).alias("null"),
    ).first()
    if found is None or found["most"] is None:
        return None
    where = f"derived table {table.name}"
    grain = ", ".join(table.grain)
    if found["nulls"]:
        return f"{where}: {found['nulls']} rows have a NULL in its grain ({grain}), e.g. {found['null']}{_NULL_GRAIN}"
    if found["most"] > 1:
        return f"{where}: {found['most']} rows share one grain ({grain}), e.g. {found['shared']}{_FANS_OUT}"
    return None


def _raised(table: DerivedTable, exc: Exception) -> str | None:
    """The grain check's own message in a failed write's error (classic, or Spark Connect with its stack trace)."""
    server_trace = getattr(exc, "getStackTrace", None)
    texts = [str(exc), str(server_trace() or "") if callable(server_trace) else ""]
    pattern = re.compile(
        r"\[USER_RAISED_EXCEPTION\] (" + re.escape(f"derived table {table.name}: ") + r"[^\n]*?)(?: SQLSTATE: \w+)?$",
        re.M,
    )
    found = next((match for text in texts if (match := pattern.search(text))), None)
    return None if found is None else found.group(1)


def write_table(warehouse: Warehouse, table: DerivedTable, rows: DataFrame, as_of: date) -> int:
    """Check and write one derived table in one statement; its rows (`full`) or its slice's rows (`as_of`).

    A table whose grain repeats or holds a NULL is refused with `GrainViolated`, one whose columns Delta
    cannot store (`column_problems`) with `ColumnsRefused`; nothing of it is committed: the table stays as
    it was.
    """
    refused = column_problems(rows.schema)
    if refused:
        raise ColumnsRefused(table.name, refused)
    checked = grain_checked(table, rows)
    predicate = f"{AS_OF_DATE} = DATE {sql_string(as_of.isoformat())}"
    try:
        if table.refresh == "full":
            return warehouse.replace_table(table.name, checked, comment=table.description)
        # A daily table's comment is set when it is created: nothing its write reads holds the comment it
        # has now, and asking would cost every run a statement. A changed description reaches a full table
        # on its next build, a daily one through COMMENT ON TABLE by hand (README, "Derived tables").
        warehouse.ensure_table(table.name, rows.schema, comment=table.description)
        warehouse.replace_where(table.name, checked, predicate)
    except Exception as exc:
        # Spark Connect without server stack traces keeps only the outer error (the failed write task):
        # then one more query over the rows finds the example the message must name.
        problem = _raised(table, exc) or (None if is_conflict(exc) else grain_problem(table, rows))
        if problem is None:
            raise
        raise GrainViolated(problem) from exc
    return warehouse.replaced_rows(table.name, predicate)


def build_table(context: BatchContext, table: DerivedTable, inputs: Inputs, as_of: date | None = None) -> RunRecord:
    """Build, check and write one derived table as of `as_of` (the batch's business date by default); its
    processing_log row."""
    started = datetime.now(UTC)
    as_of = as_of or context.manifest.business_date
    params = table_params(context.pipeline)
    rows = table_rows(context.spark, table, inputs, params, as_of, context.manifest.batch_id)
    count = write_table(context.warehouse, table, rows, as_of)
    print(f"{TASK}: {table.name}: {count} rows ({'replaced' if table.refresh == 'full' else f'slice {as_of}'})")
    return context.record(
        TASK,
        table_name=table.name,
        started_at=started,
        rows_inserted=count,
        details=json.dumps({"refresh": table.refresh, "as_of": as_of.isoformat(), "inputs": sorted(table.inputs())}),
    )


def derive_tables(context: BatchContext) -> None:
    """Build every derived table in dependency order; one processing_log row per table. Then, the batch
    complete, release its stage rows."""
    if skip_completed(context, TASK):
        release_batch_stage(context, TASK)
        return
    # Run on its own after a failed validate or merge, it would complete the batch (and release its stage rows).
    refuse_partly_staged(context, TASK)
    refuse_failed_validation(context, TASK)
    refuse_failed_merge(context, TASK)
    tables = parse_tables(context.pipeline, context.contracts)
    declared = len(tables)
    as_of = context.manifest.business_date
    why = "the pipeline declares no [[tables]]" if not tables else ""
    if tables and (newest := newest_built(context)) is not None and newest > as_of:
        # A late batch: its rows are in the targets now, so the full tables that read only targets and
        # other such tables are rebuilt as of the newest day (never back to this one); the daily slices,
        # and what reads this batch's own rows, stay as they are: built now they would mix later days in.
        kept = current_state_tables(tables)
        # Named, so that a person reading the run sees which tables still lack this day (a slice of it is never
        # built: a daily series has a gap there).
        left = ", ".join(table.name for table in tables if table not in kept)
        late = f"batch of {as_of} after one of {newest}"
        tables = tuple(kept)
        if not tables:
            why = f"the derived tables are built as of {newest}, later than this batch's {as_of}; none to rebuild"
        else:
            rebuilt = ", ".join(table.name for table in tables)
            print(f"{TASK}: {late}: rebuilt as of {newest}: {rebuilt}")
        if left:
            kinds = "daily slices, what reads this batch's own rows, and tables reading those"
            print(f"{TASK}: {late}: left as they are ({kinds}): {left}")
        as_of = newest
    if why:
        details = json.dumps({"tables": declared, "why": why})
        append_run(context.spark, context.warehouse, context.record(TASK, status=SKIPPED, details=details))
        print(f"{TASK}: pipeline {context.pipeline.name}: nothing built: {why}")
        release_batch_stage(context, TASK)
        return
    inputs = register_inputs(context, tables)
    try:
        records = build_tables(context, tables, inputs, as_of)
        # Before the views are dropped: a failing drop must not lose the rows of tables that were built.
        append_runs(context.spark, context.warehouse, records)
    finally:
        inputs.close()
    # After the rows that make the batch complete (`batch.completion`): a crash before them leaves
    # the stage for the retry.
    release_batch_stage(context, TASK)


def current_state_tables(tables: Sequence[DerivedTable]) -> list[DerivedTable]:
    """The `full` tables that read neither this batch's rows (`${batch.d}`, its validation and log rows) nor a
    table that does or that is a daily slice: what a late batch rebuilds as of the newest day."""
    kept: list[DerivedTable] = []
    names: set[str] = set()
    for table in tables:  # in build order: a table's inputs come before it
        reads_batch = any(name.startswith("batch.") or name in _LOG_SCHEMAS for name in table.inputs())
        if table.refresh == "full" and not reads_batch and table.tables_read() <= names:
            kept.append(table)
            names.add(table.name)
    return kept


def build_tables(
    context: BatchContext, tables: Sequence[DerivedTable], inputs: Inputs, as_of: date | None = None
) -> list[RunRecord]:
    """Build the tables in order; their processing_log rows.

    On a failure the tables built before it are logged too (they are rebuilt, whatever came after), and
    the one that failed with its error; the tables after it were not attempted and get no row.
    """
    read_later = set().union(*(table.tables_read() for table in tables))
    records: list[RunRecord] = []
    try:
        for table in tables:
            started = datetime.now(UTC)
            try:
                records.append(build_table(context, table, inputs, as_of))
            except Exception as exc:
                records.append(context.failed(TASK, exc, table_name=table.name, started_at=started))
                raise
            # A later table reads this one as written; one no table reads needs no view.
            if table.name in read_later:
                inputs.register("table", table.name, context.warehouse.read(table.name))
    except Exception:
        append_failing_runs(context.spark, context.warehouse, records, TASK)
        raise
    return records


def main(argv: list[str] | None = None) -> int:
    return run_batch_task(TASK, sys.argv[1:] if argv is None else argv, derive_tables)


if __name__ == "__main__":
    sys.exit(main())
