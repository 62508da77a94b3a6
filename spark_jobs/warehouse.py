"""Where the Delta tables live and the statements that write them: Delta Lake on Spark, in Spark SQL.

The same statements run in a classic local session, over a local Spark Connect server and on
Databricks serverless (Spark Connect): SQL and the DataFrame API only, no JVM handle, no caching.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from pyspark.errors import AnalysisException
from pyspark.logger import PySparkLogger
from pyspark.sql import DataFrame, Row, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.sql.types import NullType, StructField, StructType, TimestampType

from filegate.contracts import quoted_name, sql_literal
from filegate.errors import FilegateError, UnsafeSql
from spark_jobs.columns import BATCH_ID
from spark_jobs.merge import MergeSpec

T = TypeVar("T")

# PySpark 4.0 logs an error that carries a query context through a PySparkLogger it creates on first use,
# swapping the process's logger class to do so (`PySparkLogger.getLogger`). Two threads raising such
# errors at once (a batch's members are staged in threads) can create it as a plain Logger, and every
# later error of the process then fails with "Logger._log() got an unexpected keyword argument
# 'errorClass'" instead of saying what went wrong. Created here, once, before any thread runs.
for _name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
    PySparkLogger.getLogger(_name)

# Statements are built as text (S608): every name is a quoted identifier or a checked path, every
# literal passes `sql_string`, and merge expressions come from `spark_jobs.merge`, never from input.
# Delta's optimistic concurrency: a commit that lost the race to a conflicting one fails with one of
# these error classes (Delta 4.0, `delta-error-classes.json`), or names the Java exception. Nothing
# was committed by the loser, so running the whole statement again against the new snapshot is safe.
# Two first runs creating one table race too: the loser may find the winner's folder made and its first
# commit not yet written (DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION); on retry the table exists. A
# folder that really holds something else fails the same way after the last attempt, with that error.
# When the winner's first commit lands while the loser's CREATE runs, Delta holds the loser's properties
# against the winner's, which also carry the session's defaults (`...properties.defaults.*`), and refuses
# them (DELTA_CREATE_TABLE_WITH_DIFFERENT_PROPERTY); on retry the table exists and the CREATE does nothing.
_CONFLICTS = re.compile(
    r"DELTA_CONCURRENT_\w+|DELTA_METADATA_CHANGED|DELTA_PROTOCOL_CHANGED|DELTA_TABLE_ALREADY_EXISTS"
    r"|DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION|DELTA_CREATE_TABLE_WITH_DIFFERENT_PROPERTY"
    r"|Concurrent\w*Exception|MetadataChangedException|ProtocolChangedException|FileAlreadyExistsException"
)
# A path's `CREATE TABLE IF NOT EXISTS` takes a folder that holds anything for the table (Delta 4.0's
# `DeltaCatalog.tableExists`): while another run's first commit is under way, its `_delta_log` made and no
# commit in it yet, the statement does nothing and the read after it finds no table. Not a lost commit
# (any read of a missing table says so), so only `ensure_table` retries it, its CREATE and read together.
_CREATE_UNDER_WAY = re.compile(r"DELTA_TABLE_NOT_FOUND")
MAX_ATTEMPTS = 6
# How far back a replace looks for its own commit: beyond the concurrent commits of other batches.
_HISTORY_DEPTH = 20
# A commit's time comes from the storage's clock, a batch's staging time from the driver's.
_CLOCK_SKEW = timedelta(hours=1)
# How far back `merged_before` reads at most: a page of 5,120 commits, a few seconds of the driver's.
_HISTORY_MAX = 5120
_FIRST_BACKOFF_SECONDS = 0.2
# What Delta names a `CREATE OR REPLACE TABLE ... AS SELECT` commit in the history (Delta 4.0's
# `DeltaOperations`): the first one creates the table, later ones replace it.
_TABLE_REPLACES = frozenset({"CREATE OR REPLACE TABLE AS SELECT", "CREATE TABLE AS SELECT", "REPLACE TABLE AS SELECT"})
# A table's change data feed (`changed_rows` reads it) and the columns it adds to each changed row.
CHANGE_FEED = "delta.enableChangeDataFeed"
_CHANGE_TYPE = "_change_type"
_COMMIT = "_commit_version"
_FEED_COLUMNS = (_CHANGE_TYPE, _COMMIT, "_commit_timestamp")
_FIRST_COMMIT = "_filegate_first_commit"
_LAST_COMMIT = "_filegate_last_commit"
# Where a StructField's metadata holds its column's comment, as Spark reads it from a table and writes it to one.
COMMENT = "comment"


class ColumnRetyped(FilegateError):
    """A table holds a column with another type than the one Filegate now writes into it."""


@dataclass(frozen=True)
class UnityCatalog:
    """Tables `catalog.schema.table` in Unity Catalog (Databricks), the schema created when missing."""

    catalog: str
    schema: str

    def name(self, table: str) -> str:
        return f"{self.schema_name()}.{quoted_name(table)}"

    def schema_name(self) -> str:
        """`catalog`.`schema`, quoted: the catalog API parses the name as SQL does, so `filegate-dev` needs them too."""
        return f"{quoted_name(self.catalog)}.{quoted_name(self.schema)}"

    def describe(self) -> str:
        return f"{self.catalog}.{self.schema}"


@dataclass(frozen=True)
class LocalWarehouse:
    """Tables as Delta folders `<folder>/<catalog>/<schema>/<table>`, addressed by path: no metastore needed.

    Locally the folder stands in for Unity Catalog's storage, so catalog and schema keep the one
    meaning they have on Databricks, and any process (a task, a test, the demo's report) finds a
    table from the same three names.
    """

    folder: Path
    catalog: str
    schema: str

    def path(self, table: str) -> Path:
        return self.folder.resolve() / self.catalog / self.schema / table

    def name(self, table: str) -> str:
        path = str(self.path(table))
        if "`" in path:
            raise UnsafeSql(f"a local warehouse path cannot hold a backtick: {path}")
        return f"delta.`{path}`"

    def describe(self) -> str:
        return f"{self.catalog}.{self.schema} under {self.folder}"


TableLocation = UnityCatalog | LocalWarehouse


@dataclass(frozen=True)
class MergeCounts:
    """What a MERGE did to the target, as the MERGE itself reports it."""

    inserted: int
    updated: int
    deleted: int = 0


@dataclass(frozen=True)
class TableDetail:
    """What `DESCRIBE DETAIL` says of a table: its properties, and its comment ("" when it has none)."""

    properties: dict[str, str]
    comment: str


def instant(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is local time, as `collect` gives a TIMESTAMP.

    Compare collected times as instants: in the hour the clocks go back, two naive readings compare
    the wrong way round. A classic session's `collect` marks the second reading of that hour (`fold`),
    which this keeps; Spark Connect's drops the mark (Databricks runs in UTC, which has no such hour).
    """
    return value.astimezone(UTC)


def driver_rows(spark: SparkSession, rows: Sequence[Sequence[Any]], schema: StructType) -> DataFrame:
    """Rows the driver holds (log rows, results, or none), as a DataFrame of `schema`.

    Handed to Spark as an Arrow table, which the JVM reads itself. `createDataFrame` of a Python list
    instead pickles the rows into an RDD that Python worker processes unpickle again, each time a
    statement reads the frame: on a local Spark a frame of five log rows cost about 0.3 s of CPU (JVM and
    workers) that way against 0.03 s as Arrow, and every task writes some. Spark Connect sends Arrow
    either way.

    A naive datetime in a TIMESTAMP column is local time, as `createDataFrame` and `collect` take it
    (a time the job collected, such as a stage's `_ingested_at`, comes back naive and local); Arrow
    would read it as UTC, hours off on a machine whose zone is not UTC.
    """
    names = schema.fieldNames()
    instants = {f.name for f in schema.fields if isinstance(f.dataType, TimestampType)}
    records = [
        {
            name: instant(value) if name in instants and isinstance(value, datetime) else value
            for name, value in zip(names, row, strict=True)
        }
        for row in rows
    ]
    return spark.createDataFrame(pa.Table.from_pylist(records, schema=to_arrow_schema(schema)), schema)


def sql_string(text: str) -> str:
    """A SQL string literal of `text`, which must hold no quote, backslash or control character."""
    if not re.fullmatch(r"[^'\\\x00-\x1f\x7f]*", text):
        raise UnsafeSql(f"{text!r} cannot be written as a plain SQL literal (no quote, backslash or control)")
    return f"'{text}'"


def batch_predicate(batch_id: str) -> str:
    """`_batch_id = '<id>'`, for REPLACE WHERE and DELETE."""
    return f"{BATCH_ID} = {sql_string(batch_id)}"


def is_conflict(exc: BaseException) -> bool:
    """Whether an error is Delta refusing a commit because a concurrent one changed what it read."""
    return bool(_CONFLICTS.search(f"{type(exc).__name__}: {exc}"))


def _lost_create_race(exc: BaseException) -> bool:
    """Whether a table's creation and first read failed because another run was creating it at the same time."""
    return is_conflict(exc) or bool(_CREATE_UNDER_WAY.search(str(exc)))


class HalfCreatedTable(FilegateError):
    """A table's folder holds a Delta log without a first commit, long after any creation could be under way."""


def committed(
    action: Callable[[], T],
    what: str,
    *,
    attempts: int = MAX_ATTEMPTS,
    retried: Callable[[BaseException], bool] = is_conflict,
    waiting: str = "a concurrent commit won",
) -> T:
    """Run a Delta write; when a concurrent commit wins the race, run it again (bounded, jittered backoff).

    `action` must build its statement from the table's current state each time (the MERGE's source
    for SCD2 reads the target): a retry then works on the winner's snapshot, and because every
    write here is idempotent (a per-batch replace, a MERGE that only takes strictly newer rows), a
    retried write can neither lose nor duplicate a row. `retried` tells a lost race from any other error;
    `waiting` says what each retry waits for.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:
            if attempt == attempts or not retried(exc):
                raise
            delay = _FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1) * (1 + random.random())
            print(f"{what}: {waiting} (attempt {attempt} of {attempts}); retrying in {delay:.1f} s")
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class Warehouse:
    """The table operations the two tasks need, as Delta Lake on Spark SQL statements."""

    def __init__(self, spark: SparkSession, location: TableLocation):
        self.spark = spark
        self.location = location
        self.description = f"Delta Lake on Spark, tables {location.describe()}"
        # Each table's columns as this process's `ensure_table` last declared them (lower case).
        self._declared: dict[str, frozenset[str]] = {}

    def name(self, table: str) -> str:
        return self.location.name(table)

    def ensure_table(
        self,
        table: str,
        schema: StructType,
        partition_by: Sequence[str] = (),
        properties: Mapping[str, str] | None = None,
        check: Callable[[DataFrame], None] | None = None,
        comment: str = "",
    ) -> None:
        """Create the table empty when it does not exist yet, partitioned by `partition_by` if given.

        An existing table keeps the layout and `properties` it was created with; every statement here
        works on either. A new one gets `properties` in its creating commit, so two runs racing to
        create it leave the winner's, for the loser to read. `check` sees the table as found (or just
        created) before its columns are checked and migrated, and may refuse it.

        A new table gets `comment` as its own and each field's metadata `comment` as its column's, in the
        creating statement. An existing one has a column's comment set again when its field's differs
        from the one the table's schema holds (read here anyway, for the migration): a run that changed
        none issues no statement for them. Its table comment is not read here, so it is left as it is:
        `target_definition.ensure_target` keeps a target's current from the detail its check reads.
        """
        self.ensure_schema()
        # An existing table costs one lookup (its columns, needed for the migration anyway), not a
        # CREATE statement as well.
        existing = self.read_if_exists(table)
        if existing is None:
            definition = ", ".join(_column_definition(field) for field in schema.fields)
            partitioning = (
                f"PARTITIONED BY ({', '.join(quoted_name(name) for name in partition_by)}) " if partition_by else ""
            )
            # Deletion vectors on, as Databricks enables them for new tables: the local tables then carry
            # the same table features, and whatever reads them for people is tested against those.
            settings = {"delta.enableDeletionVectors": "true", **(properties or {})}
            pairs = ", ".join(f"{sql_string(key)} = {sql_string(value)}" for key, value in settings.items())
            described = f"COMMENT {sql_literal(comment)} " if comment else ""
            statement = (
                f"CREATE TABLE IF NOT EXISTS {self.name(table)} ({definition}) USING DELTA {partitioning}"
                f"{described}TBLPROPERTIES ({pairs})"
            )

            def create() -> DataFrame:
                self.spark.sql(statement).collect()
                created = self.read(table)
                created.schema  # noqa: B018 - resolved inside the retry: the winner's first commit may be under way
                return created

            # Two first runs may race to create the table: the loser sees it exists on its retry, perhaps
            # made by another release with other columns, which are read again.
            try:
                existing = committed(
                    create, f"create {table}", retried=_lost_create_race, waiting="another run is creating it"
                )
            except AnalysisException as exc:
                if not _CREATE_UNDER_WAY.search(str(exc)):
                    raise
                raise HalfCreatedTable(
                    f"{self.name(table)}: its folder holds a _delta_log with no commit in it, still after "
                    f"{MAX_ATTEMPTS} tries: a creation stopped before its first commit left it (a killed task). "
                    "No table has ever been there; delete the folder and run again"
                ) from exc
        if check is not None:
            check(existing)
        _refuse_retyped_columns(self.name(table), schema, existing.schema)
        self._add_missing_columns(table, schema, existing.columns)
        self._comment_columns(table, schema, existing.schema)
        self._declared[table] = frozenset(field.name.lower() for field in schema.fields)

    def replace_table(self, table: str, rows: DataFrame, comment: str = "") -> int:
        """Atomically replace the whole table (schema and rows) with `rows`; how many rows it now has.

        One `CREATE OR REPLACE TABLE ... AS SELECT` commit: readers see the old table or the new one,
        its history keeps every earlier version, and a column added to the SQL needs no migration.
        The count is the commit's own `numOutputRows`: the newest replace is this one, or a concurrent
        one that replaced it, and then the table holds that one's rows. The table's comment is `comment`
        (none when empty), set by the same statement, so a changed one costs nothing more.
        """
        self.ensure_schema()
        with self._view(rows) as view:
            described = f"COMMENT {sql_literal(comment)} " if comment else ""
            properties = f"{described}TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')"
            statement = f"CREATE OR REPLACE TABLE {self.name(table)} USING DELTA {properties} AS SELECT * FROM {view}"  # noqa: S608
            committed(lambda: self.spark.sql(statement).collect(), f"replace {table}")
        metrics = self._newest_metrics(table, lambda commit: commit["operation"] in _TABLE_REPLACES)
        if metrics is not None and "numOutputRows" in metrics:
            return int(metrics["numOutputRows"])
        return int(self.read(table).count())

    def _add_missing_columns(self, table: str, schema: StructType, columns: Sequence[str]) -> None:
        """Migrate a table made by an earlier release in place: add the columns it lacks, drop nothing.

        Writes name the table's own columns, so without this a new column (a rule's ids, a derived
        column) would be silently left out of an existing table.
        """
        existing = {name.lower() for name in columns}
        missing = [field for field in schema.fields if field.name.lower() not in existing]
        if not missing:
            return
        columns = ", ".join(_column_definition(field) for field in missing)
        statement = f"ALTER TABLE {self.name(table)} ADD COLUMNS ({columns})"
        committed(lambda: self.spark.sql(statement).collect(), f"add columns to {table}")

    def _comment_columns(self, table: str, schema: StructType, existing: StructType) -> None:
        """Set the comment of each column the table holds whose field in `schema` has another one, in one commit.

        A field without a `comment` in its metadata leaves its column's alone; an empty one removes it.
        A column just added got its comment with it (`_column_definition`).
        """
        held = {field.name.lower(): field for field in existing.fields}
        changed = [
            (held[field.name.lower()].name, field.metadata[COMMENT])
            for field in schema.fields
            if COMMENT in field.metadata
            and field.name.lower() in held
            and held[field.name.lower()].metadata.get(COMMENT, "") != field.metadata[COMMENT]
        ]
        if not changed:
            return
        columns = ", ".join(f"{quoted_name(name)} COMMENT {sql_literal(text)}" for name, text in changed)
        statement = f"ALTER TABLE {self.name(table)} ALTER COLUMN {columns}"
        committed(lambda: self.spark.sql(statement).collect(), f"comment the columns of {table}")

    def ensure_schema(self) -> None:
        """Create the Unity Catalog schema the tables live in when it is missing (a local warehouse needs none)."""
        location = self.location
        if not isinstance(location, UnityCatalog):
            return
        if self.spark.catalog.databaseExists(location.schema_name()):
            return
        # Only when missing: creating needs CREATE SCHEMA on the catalog, using an existing one does not.
        self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {location.schema_name()}")

    def read(self, table: str) -> DataFrame:
        """The table's current rows."""
        return self.spark.table(self.name(table))

    def holds_files(self, table: str) -> bool:
        """Whether the table's current version has a data file (`DESCRIBE DETAIL`): its log is read, not its
        rows, so this costs a fraction of a query that reads one row. A new table has none, nor one whose
        rows were all deleted: Delta removes a file once a delete takes its every row, except a file
        without row-count statistics, which keeps a deletion vector over all its rows instead."""
        (detail,) = self.spark.sql(f"DESCRIBE DETAIL {self.name(table)}").select("numFiles").collect()
        return bool(detail["numFiles"])

    def version(self, table: str) -> int:
        """The table's newest commit version (its log, not its rows)."""
        (newest,) = self.spark.sql(f"DESCRIBE HISTORY {self.name(table)} LIMIT 1").select("version").collect()
        return int(newest["version"])

    def changed_rows(self, table: str, first: int, last: int, identity: Sequence[str]) -> tuple[DataFrame, DataFrame]:
        """The rows commits `first` to `last` left (inserted, updated to) and the ones they held (updated, deleted).

        Read from the table's change data feed (which must be on): only those commits' own files, not
        the whole table, and a commit that changed no data (a compaction) adds nothing. Over several
        commits, a row (its `identity` columns) is given as the first commit found it and the last one
        left it, as a read of the table before and after them would: one inserted and then updated is
        left with its update's values and held nothing, one updated and then deleted held its first
        values and is left nowhere. Both frames have the table's columns.
        """
        feed = self.spark.read.option("readChangeFeed", "true")
        feed = feed.option("startingVersion", int(first)).option("endingVersion", int(last))
        changes = feed.table(self.name(table))
        change = F.col(_CHANGE_TYPE)
        left, held = change.isin("insert", "update_postimage"), change.isin("update_preimage", "delete")
        if last > first:
            # A window costs a shuffle of the changes: only when another commit may have touched a row again.
            row = Window.partitionBy(*identity)
            changes = changes.withColumn(_FIRST_COMMIT, F.min(_COMMIT).over(row))
            changes = changes.withColumn(_LAST_COMMIT, F.max(_COMMIT).over(row))
            left = left & (F.col(_COMMIT) == F.col(_LAST_COMMIT))
            held = held & (F.col(_COMMIT) == F.col(_FIRST_COMMIT))
        extra = (*_FEED_COLUMNS, _FIRST_COMMIT, _LAST_COMMIT)
        return changes.where(left).drop(*extra), changes.where(held).drop(*extra)

    def properties(self, table: str) -> dict[str, str]:
        """The table's properties (`SHOW TBLPROPERTIES`)."""
        return {row["key"]: row["value"] for row in self.spark.sql(f"SHOW TBLPROPERTIES {self.name(table)}").collect()}

    def detail(self, table: str) -> TableDetail:
        """The table's properties and comment, in one statement (`DESCRIBE DETAIL`: its log, not its rows).

        `SHOW TBLPROPERTIES` leaves the comment out. This one also counts the table's files, from the
        snapshot's state that a MERGE or read of the same version then reuses.
        """
        statement = f"DESCRIBE DETAIL {self.name(table)}"
        (found,) = self.spark.sql(statement).select("properties", "description").collect()
        return TableDetail(dict(found["properties"] or {}), found["description"] or "")

    def set_comment(self, table: str, comment: str) -> None:
        """Set the table's comment (none when empty) in one commit, not retried here."""
        text = sql_literal(comment) if comment else "NULL"
        self.spark.sql(f"COMMENT ON TABLE {self.name(table)} IS {text}").collect()

    def set_properties(self, table: str, settings: Mapping[str, str]) -> None:
        """Set table properties in one commit, not retried here (the caller retries its check with it).

        A metadata change: a write that started before it and commits after it fails as a conflict.
        """
        pairs = ", ".join(f"{sql_string(key)} = {sql_string(value)}" for key, value in settings.items())
        self.spark.sql(f"ALTER TABLE {self.name(table)} SET TBLPROPERTIES ({pairs})").collect()

    def read_if_exists(self, table: str) -> DataFrame | None:
        """The table's rows, or None when it does not exist yet (a target is created by its first merge).

        One lookup: the read that proved the table exists is the one returned, not read again.
        """
        try:
            rows = self.read(table)
            rows.schema  # noqa: B018 - over Spark Connect a read resolves the table only when asked
        except AnalysisException:
            return None
        return rows

    def read_batch(self, table: str, batch_id: str) -> DataFrame:
        """The table's rows of one batch; Delta skips the other batches' files by their statistics."""
        return self.read(table).where(F.col(BATCH_ID) == F.lit(batch_id))

    def replaced_rows(self, table: str, predicate: str) -> int:
        """How many rows the newest `replace_where` of `predicate` wrote, from that commit's own metrics.

        `INSERT ... REPLACE WHERE` returns no result, but its commit records its predicate and the
        rows it added: `numOutputRows` holds the new rows plus `numCopiedRows`, the other batches'
        rows it kept from a file it shared with the batch (rewritten, or re-added with a deletion
        vector; Delta's `WriteIntoDelta`). The newest such commit of the batch is this one, or a
        concurrent attempt at the same batch that replaced it, and then the table holds that one's
        rows. Reading a few commit files is far cheaper than scanning the table; when the log does
        not say, the table's rows matching the predicate are counted.
        """
        recorded = f"({predicate})"

        def replaced(commit: Row) -> bool:
            return commit["operation"] == "WRITE" and (commit["operationParameters"] or {}).get("predicate") == recorded

        metrics = self._newest_metrics(table, replaced)
        if metrics is not None and "numOutputRows" in metrics and "numCopiedRows" in metrics:
            return int(metrics["numOutputRows"]) - int(metrics["numCopiedRows"])
        return int(self.read(table).where(F.expr(predicate)).count())

    def _newest_metrics(self, table: str, matches: Callable[[Row], bool]) -> dict[str, str] | None:
        """The operation metrics of the table's newest commit that `matches` (None when none is recent)."""
        history = self.spark.sql(f"DESCRIBE HISTORY {self.name(table)} LIMIT {_HISTORY_DEPTH}").collect()
        for commit in history:
            if matches(commit):
                return dict(commit["operationMetrics"] or {})
        return None

    def _written_columns(self, table: str, rows: DataFrame, without: str | None = None) -> str:
        """The select list that writes `rows` into every column of the table, in the table's order.

        A column the rows lack that the table's `ensure_table` in this process no longer declares (a
        contract dropped it: a migration adds columns and drops none) is written as NULL of its type, so
        the table keeps its earlier rows' values and a new write does not stop on a name that is gone.
        A declared column the rows lack is the writer's mistake: it is selected by name, and Spark's
        error names it. `without`: a column left out (a partition's, which the statement gives).
        """
        present = {name.lower() for name in rows.columns}
        declared = self._declared.get(table)

        def written(field: StructField) -> str:
            name = field.name.lower()
            if name in present or declared is None or name in declared:
                return quoted_name(field.name)
            return f"CAST(NULL AS {field.dataType.simpleString()}) AS {quoted_name(field.name)}"

        fields = [field for field in self.read(table).schema.fields if field.name != without]
        return ", ".join(written(field) for field in fields)

    def replace_where(self, table: str, rows: DataFrame, predicate: str) -> None:
        """Atomically replace the rows matching `predicate` (checked SQL text) with `rows`, which must all match it."""
        columns = self._written_columns(table, rows)
        with self._view(rows) as view:
            statement = f"INSERT INTO {self.name(table)} REPLACE WHERE {predicate} SELECT {columns} FROM {view}"  # noqa: S608
            committed(lambda: self.spark.sql(statement).collect(), f"replace {predicate} in {table}")

    def partition_columns(self, table: str) -> tuple[str, ...]:
        """The columns the table is partitioned by (`DESCRIBE DETAIL`: its log, not its rows)."""
        (detail,) = self.spark.sql(f"DESCRIBE DETAIL {self.name(table)}").select("partitionColumns").collect()
        return tuple(detail["partitionColumns"] or ())

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> None:
        """Atomically replace the table's rows of one batch with `rows`, which are all of that batch.

        A table partitioned by batch has that partition overwritten (`INSERT OVERWRITE ... PARTITION`): the
        statement gives every row the batch id, so Delta has no predicate to check each row against, as
        it does for REPLACE WHERE (the stage of a 1M-row file took 13.5 s against 15.2 s:
        bench/results/merge.md, session 44). The rows' own batch column is not written. A batch of no
        rows empties its partition. A table made before the stage was partitioned (an earlier release)
        keeps its layout: Spark refuses the PARTITION clause, and the batch is replaced with REPLACE
        WHERE. The layout is asked (`DESCRIBE DETAIL`) only then, not before every write, where a file
        of a few rows would pay a statement's fixed cost for nothing.
        """
        columns = self._written_columns(table, rows, without=BATCH_ID)
        into = f"{self.name(table)} PARTITION ({quoted_name(BATCH_ID)} = {sql_string(batch_id)})"
        try:
            with self._view(rows) as view:
                statement = f"INSERT OVERWRITE TABLE {into} SELECT {columns} FROM {view}"  # noqa: S608
                committed(lambda: self.spark.sql(statement).collect(), f"replace batch {batch_id} in {table}")
        except AnalysisException:
            if BATCH_ID in self.partition_columns(table):
                raise
            self.replace_where(table, rows, batch_predicate(batch_id))

    def delete_batch(self, table: str, batch_id: str) -> None:
        """Delete the table's rows of one batch."""
        self.delete_where(table, batch_predicate(batch_id))

    def delete_where(self, table: str, predicate: str) -> None:
        """Delete the table's rows matching `predicate` (checked SQL text)."""
        statement = f"DELETE FROM {self.name(table)} WHERE {predicate}"  # noqa: S608
        committed(lambda: self.spark.sql(statement).collect(), f"delete {predicate} from {table}")

    def append(self, table: str, rows: DataFrame) -> None:
        """Append rows; a blind append never conflicts with another writer."""
        columns = self._written_columns(table, rows)
        with self._view(rows) as view:
            statement = f"INSERT INTO {self.name(table)} SELECT {columns} FROM {view}"  # noqa: S608
            committed(lambda: self.spark.sql(statement).collect(), f"append to {table}")

    def merge(self, table: str, source: Callable[[], DataFrame], spec: MergeSpec) -> MergeCounts:
        """Run the MERGE `spec` from the rows `source()` builds, in one transaction; its own counts.

        The counts are the ones the MERGE statement returns, not the table's last commit: on Databricks
        an automatic compaction may commit right after the MERGE.
        """

        def attempt() -> MergeCounts:
            with self._view(source()) as view:
                (result,) = self.spark.sql(merge_statement(self.name(table), view, spec)).collect()
            return MergeCounts(
                inserted=int(result["num_inserted_rows"]),
                updated=int(result["num_updated_rows"]),
                deleted=int(result["num_deleted_rows"]),
            )

        return committed(attempt, f"merge into {table}")

    def merged_before(self, table: str, batch_id: str, since: datetime | None) -> MergeCounts | None:
        """The counts of the newest MERGE of a `tagged` spec of this batch that changed the table.

        Found by the batch id in the commit's recorded insert conditions (as a whole word: ids are made
        of the characters around it), among the commits since the batch was staged (`since`; however
        many other batches' merges came after it), or the newest ones without it; None when none holds one.
        """
        word = re.compile(rf"(?<![\w.:-]){re.escape(batch_id)}(?![\w.:-])")
        for commit in self._history_since(table, since):
            conditions = (commit["operationParameters"] or {}).get("notMatchedPredicates") or ""
            if commit["operation"] != "MERGE" or not word.search(conditions):
                continue
            metrics = commit["operationMetrics"] or {}
            counts = MergeCounts(
                inserted=int(metrics.get("numTargetRowsInserted", 0)),
                updated=int(metrics.get("numTargetRowsUpdated", 0)),
                deleted=int(metrics.get("numTargetRowsDeleted", 0)),
            )
            if counts.inserted or counts.updated or counts.deleted:
                return counts
        return None

    def _history_since(self, table: str, since: datetime | None) -> Iterator[Row]:
        """The table's commits, newest first: the newest `_HISTORY_DEPTH`, then further back a longer page at a
        time while the oldest read is not older than `since` (less the clocks' skew), up to `_HISTORY_MAX`
        commits (a MERGE further back is not found, and its retry logs zeros). Each page is read from
        the newest commit again (DESCRIBE HISTORY has only a LIMIT); pages grow fourfold, so all of them
        together read at most about five times the commits needed."""
        read, depth = 0, _HISTORY_DEPTH
        while True:
            history = self.spark.sql(f"DESCRIBE HISTORY {self.name(table)} LIMIT {depth}").collect()
            yield from history[read:]
            if (
                since is None
                or len(history) < depth
                or depth >= _HISTORY_MAX
                or instant(history[-1]["timestamp"]) < instant(since) - _CLOCK_SKEW
            ):
                return
            read, depth = len(history), min(depth * 4, _HISTORY_MAX)

    @contextmanager
    def _view(self, rows: DataFrame) -> Iterator[str]:
        """`rows` as a temporary view for one statement (SQL names DataFrames only through views)."""
        view = f"filegate_rows_{uuid.uuid4().hex}"
        rows.createOrReplaceTempView(view)
        try:
            yield view
        finally:
            self.spark.catalog.dropTempView(view)


def _column_definition(field: StructField) -> str:
    """A column as CREATE TABLE and ADD COLUMNS declare it: its name, type and, when its metadata has one, comment."""
    comment = field.metadata.get(COMMENT, "")
    described = f" COMMENT {sql_literal(comment)}" if comment else ""
    return f"{quoted_name(field.name)} {field.dataType.simpleString()}{described}"


def _refuse_retyped_columns(table: str, schema: StructType, existing: StructType) -> None:
    """Refuse to write a table whose column has another type than `schema` declares (a contract changed it).

    Every write selects the table's own columns, so Spark would cast each new value to the old type:
    a decimal's extra scale rounded away, a timestamp cut to its date, silently. Filegate changes no
    type in place (a migration adds columns only); the user decides how the table's rows change.
    """
    held = {field.name.lower(): field.dataType for field in existing.fields}
    retyped = [
        f"{field.name} is {held[field.name.lower()].simpleString()} in the table, {field.dataType.simpleString()} now"
        for field in schema.fields
        if field.name.lower() in held
        and not isinstance(field.dataType, NullType)
        and field.dataType.simpleString() != held[field.name.lower()].simpleString()
    ]
    if retyped:
        raise ColumnRetyped(
            f"{table}: {'; '.join(retyped)} (a contract or pipeline changed the type). Filegate does not change "
            "a column's type in place: every new value would be cast to the table's type. Keep the old type, "
            "give the column a new name, or migrate the table yourself (ALTER TABLE ... ALTER COLUMN ... TYPE "
            "where Delta's type widening allows it, or rewrite the table; a stage table left empty can be "
            "dropped), then run again"
        )


def merge_statement(target: str, view: str, spec: MergeSpec) -> str:
    """The `MERGE INTO` statement of a spec, from a view into a table."""
    lines = [
        f"MERGE INTO {target} AS {spec.target_alias}",
        f"USING {view} AS {spec.source_alias}",
        f"ON {spec.predicate}",
    ]
    for condition in spec.when_matched_delete:
        lines.append(f"WHEN MATCHED AND ({condition}) THEN DELETE")
    for clause in spec.when_matched_update:
        condition = f" AND ({clause.condition})" if clause.condition else ""
        assignments = ", ".join(
            f"{spec.target_alias}.{quoted_name(column)} = {value}" for column, value in clause.assignments
        )
        lines.append(f"WHEN MATCHED{condition} THEN UPDATE SET {assignments}")
    for clause in spec.when_not_matched_insert:
        condition = f" AND ({clause.condition})" if clause.condition else ""
        columns = ", ".join(quoted_name(column) for column, _ in clause.assignments)
        values = ", ".join(value for _, value in clause.assignments)
        lines.append(f"WHEN NOT MATCHED{condition} THEN INSERT ({columns}) VALUES ({values})")  # noqa: S608
    return "\n".join(lines)
