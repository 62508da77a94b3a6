"""Where the Delta tables live: Delta Lake on Spark, or delta-rs under a local directory.

Both run the same `MergeSpec`; the choice is automatic (Delta classes on the classpath or not).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from spark_jobs.columns import BATCH_ID
from spark_jobs.merge import MergeSpec

if TYPE_CHECKING:
    from deltalake import DeltaTable

Engine = Literal["auto", "spark", "delta-rs"]
ENGINES: tuple[Engine, ...] = ("auto", "spark", "delta-rs")
_DELTA_TABLE_CLASS = "io.delta.tables.DeltaTable"


@dataclass(frozen=True)
class BatchPart:
    """One table a split batch replaces its rows in, and the columns it takes."""

    table: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class MergeCounts:
    """What a MERGE did to the target."""

    inserted: int
    updated: int


class Warehouse(Protocol):
    """The table operations the two tasks need, on one kind of Delta storage."""

    description: str

    def ensure_table(self, table: str, schema: StructType) -> None:
        """Create the table empty when it does not exist yet."""

    def read(self, table: str) -> DataFrame:
        """The table's current rows."""

    def read_batch(self, table: str, batch_id: str) -> DataFrame:
        """The table's rows of one batch, leaving unread the files that cannot hold any."""

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        """Atomically replace the table's rows of one batch with `rows` (all of that batch); how many."""

    def replace_batch_split(
        self, rows: DataFrame, flag: str, parts: tuple[BatchPart, BatchPart], batch_id: str
    ) -> tuple[int, int]:
        """Replace one batch in two tables: rows whose boolean `flag` is false go to the first, true to the second."""

    def delete_batch(self, table: str, batch_id: str) -> None:
        """Delete the table's rows of one batch."""

    def append(self, table: str, rows: DataFrame) -> None:
        """Append rows."""

    def merge(self, table: str, source: DataFrame, spec: MergeSpec) -> MergeCounts:
        """Run the MERGE `spec` from `source` into the table, in one transaction."""


# Text that Spark SQL and DataFusion (delta-rs) read alike inside single quotes. No quote: Spark reads
# 'a''b' as the adjacent literals 'a' and 'b', i.e. `ab`, DataFusion as `a'b`. No backslash: Spark
# reads it as an escape, DataFusion as itself. No control characters.
_PLAIN_TEXT = re.compile(r"[^'\\\x00-\x1f\x7f]*")


def sql_string(text: str) -> str:
    """A SQL string literal of `text`, which must hold no quote, backslash or control character."""
    if not _PLAIN_TEXT.fullmatch(text):
        raise ValueError(f"{text!r} cannot be written as a SQL literal both Spark SQL and DataFusion read alike")
    return f"'{text}'"


def batch_predicate(batch_id: str) -> str:
    """`_batch_id = '<id>'`, for replaceWhere (Spark) and predicates (delta-rs)."""
    return f"{BATCH_ID} = {sql_string(batch_id)}"


class DeltaRsWarehouse:
    """Delta tables under `<root>/<table>`, written by delta-rs; Spark reads their Parquet files."""

    def __init__(self, spark: SparkSession, root: Path):
        self.spark = spark
        self.root = root
        self.description = f"delta-rs tables under {root}"

    def path(self, table: str) -> Path:
        return self.root / table

    def ensure_table(self, table: str, schema: StructType) -> None:
        from deltalake import DeltaTable, write_deltalake

        if DeltaTable.is_deltatable(str(self.path(table))):
            return
        arrow_schema = to_arrow_schema(schema)
        write_deltalake(str(self.path(table)), _all_nullable(arrow_schema).empty_table(), mode="append")

    def read(self, table: str) -> DataFrame:
        from deltalake import DeltaTable

        delta = DeltaTable(str(self.path(table)))
        files = delta.file_uris()
        if not files:
            return self._empty(delta)
        # delta-rs never writes deletion vectors, so the snapshot's files are exactly the table's rows.
        return self.spark.read.parquet(*files)

    def read_batch(self, table: str, batch_id: str) -> DataFrame:
        from deltalake import DeltaTable

        delta = DeltaTable(str(self.path(table)))
        # Each batch is written by its own commit, so a file's min/max of _batch_id is that batch:
        # the stats prune every other batch's files (a file without stats is kept).
        files = delta.file_uris(file_pruning_predicate=[(BATCH_ID, "=", batch_id)])
        if not files:
            return self._empty(delta)
        return self.spark.read.parquet(*files).where(F.col(BATCH_ID) == F.lit(batch_id))

    def _empty(self, delta: DeltaTable) -> DataFrame:
        # An explicit schema: Spark Connect cannot infer one from zero rows.
        return self.spark.createDataFrame([], from_arrow_schema(delta.to_pyarrow_dataset().schema))

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        return self._replace(table, rows.toArrow(), batch_id)

    def replace_batch_split(
        self, rows: DataFrame, flag: str, parts: tuple[BatchPart, BatchPart], batch_id: str
    ) -> tuple[int, int]:
        # The rows come to the driver anyway: one collect evaluates their plan (the file's parse and
        # checks) once, and Arrow splits them.
        data = rows.toArrow()
        first, second = (
            self._replace(part.table, data.filter(pc.equal(data[flag], value)).select(list(part.columns)), batch_id)
            for part, value in zip(parts, (False, True), strict=True)
        )
        return first, second

    def _replace(self, table: str, data: pa.Table, batch_id: str) -> int:
        from deltalake import write_deltalake

        data = data.cast(_all_nullable(data.schema))
        write_deltalake(str(self.path(table)), data, mode="overwrite", predicate=batch_predicate(batch_id))
        return int(data.num_rows)

    def delete_batch(self, table: str, batch_id: str) -> None:
        from deltalake import DeltaTable

        DeltaTable(str(self.path(table))).delete(batch_predicate(batch_id))

    def append(self, table: str, rows: DataFrame) -> None:
        from deltalake import write_deltalake

        write_deltalake(str(self.path(table)), _nullable_arrow(rows), mode="append")

    def merge(self, table: str, source: DataFrame, spec: MergeSpec) -> MergeCounts:
        return self.merge_arrow(table, _nullable_arrow(source), spec)

    def merge_arrow(self, table: str, source: pa.Table, spec: MergeSpec) -> MergeCounts:
        """The MERGE from rows already on the driver (`merge` collects them there)."""
        from deltalake import DeltaTable

        merger = DeltaTable(str(self.path(table))).merge(
            source,
            predicate=spec.predicate,
            source_alias=spec.source_alias,
            target_alias=spec.target_alias,
        )
        for clause in spec.when_matched_update:
            merger = merger.when_matched_update(updates=dict(clause.assignments), predicate=clause.condition)
        for clause in spec.when_not_matched_insert:
            merger = merger.when_not_matched_insert(updates=dict(clause.assignments), predicate=clause.condition)
        metrics = merger.execute()
        return MergeCounts(inserted=metrics["num_target_rows_inserted"], updated=metrics["num_target_rows_updated"])


def _all_nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([field.with_nullable(True) for field in schema])


def _nullable_arrow(rows: DataFrame) -> pa.Table:
    """The rows as Arrow with every field nullable, so that each write sees the same table schema."""
    table = rows.toArrow()
    return table.cast(_all_nullable(table.schema))


class SparkDeltaWarehouse:
    """Delta Lake on Spark (Databricks, or any Spark with the Delta jars), tables `catalog.schema.table`."""

    def __init__(self, spark: SparkSession, catalog: str, schema: str):
        self.spark = spark
        self.prefix = f"{catalog}.{schema}" if catalog and catalog != "local" else schema
        self.description = f"Delta Lake on Spark, tables {self.prefix}.*"

    def name(self, table: str) -> str:
        return f"{self.prefix}.{table}"

    def ensure_table(self, table: str, schema: StructType) -> None:
        if self.spark.catalog.tableExists(self.name(table)):
            return
        if not self.spark.catalog.databaseExists(self.prefix):
            # Only when missing: creating needs CREATE SCHEMA on the catalog, using an existing one does not.
            self.spark.sql(f"CREATE SCHEMA IF NOT EXISTS {_quoted(self.prefix)}")
        self.spark.createDataFrame([], schema).write.format("delta").mode("ignore").saveAsTable(self.name(table))

    def read(self, table: str) -> DataFrame:
        return self.spark.table(self.name(table))

    def read_batch(self, table: str, batch_id: str) -> DataFrame:
        # Delta on Spark skips the other batches' files by their statistics by itself.
        return self.read(table).where(F.col(BATCH_ID) == F.lit(batch_id))

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        rows.write.format("delta").mode("overwrite").option("replaceWhere", batch_predicate(batch_id)).saveAsTable(
            self.name(table)
        )
        return int(self._last_metrics(table).get("numOutputRows", 0))

    def replace_batch_split(
        self, rows: DataFrame, flag: str, parts: tuple[BatchPart, BatchPart], batch_id: str
    ) -> tuple[int, int]:
        # Two Delta writes, so the rows' plan runs twice: DataFrame caching is not available on
        # serverless environment 4 (it needs 5), and a Delta commit writes one table.
        first, second = (
            self.replace_batch(part.table, rows.where(F.col(flag) == F.lit(value)).select(*part.columns), batch_id)
            for part, value in zip(parts, (False, True), strict=True)
        )
        return first, second

    def delete_batch(self, table: str, batch_id: str) -> None:
        from delta.tables import DeltaTable

        DeltaTable.forName(self.spark, self.name(table)).delete(F.col(BATCH_ID) == F.lit(batch_id))

    def _last_metrics(self, table: str) -> dict[str, str]:
        from delta.tables import DeltaTable

        last = DeltaTable.forName(self.spark, self.name(table)).history(1).select("operationMetrics").first()
        return dict(last[0]) if last and last[0] else {}

    def append(self, table: str, rows: DataFrame) -> None:
        rows.write.format("delta").mode("append").saveAsTable(self.name(table))

    def merge(self, table: str, source: DataFrame, spec: MergeSpec) -> MergeCounts:
        from delta.tables import DeltaTable

        target = DeltaTable.forName(self.spark, self.name(table))
        builder = target.alias(spec.target_alias).merge(source.alias(spec.source_alias), spec.predicate)
        for clause in spec.when_matched_update:
            builder = builder.whenMatchedUpdate(condition=clause.condition, set=dict(clause.assignments))
        for clause in spec.when_not_matched_insert:
            builder = builder.whenNotMatchedInsert(condition=clause.condition, values=dict(clause.assignments))
        builder.execute()
        values = self._last_metrics(table)
        return MergeCounts(
            inserted=int(values.get("numTargetRowsInserted", 0)), updated=int(values.get("numTargetRowsUpdated", 0))
        )


def _quoted(name: str) -> str:
    """A dotted name with each part in backticks, for SQL."""
    return ".".join(f"`{part}`" for part in name.split("."))


def delta_on_spark(spark: SparkSession) -> bool:
    """Whether this session can run Delta Lake itself: the Python API and the JVM classes are there."""
    if importlib.util.find_spec("delta") is None:
        return False
    if spark.__class__.__module__.startswith("pyspark.sql.connect"):
        # Spark Connect (Databricks serverless) exposes no JVM; Databricks always ships Delta.
        return True
    jvm = spark.sparkContext._jvm
    if jvm is None:
        return False
    try:
        jvm.java.lang.Class.forName(
            _DELTA_TABLE_CLASS, False, jvm.java.lang.Thread.currentThread().getContextClassLoader()
        )
    except Exception:  # py4j reports the JVM's ClassNotFoundException as a generic error
        return False
    return True


def open_warehouse(spark: SparkSession, catalog: str, schema: str, engine: Engine = "auto") -> Warehouse:
    """Delta on Spark when it can run here, else delta-rs with `schema` as a local directory."""
    if engine == "spark" or (engine == "auto" and delta_on_spark(spark)):
        return SparkDeltaWarehouse(spark, catalog, schema)
    return DeltaRsWarehouse(spark, Path(schema))
