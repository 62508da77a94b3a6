"""Where the Delta tables live: Delta Lake on Spark, or delta-rs under a local directory.

Both run the same `MergeSpec`; the choice is automatic (Delta classes on the classpath or not).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from spark_jobs.columns import BATCH_ID
from spark_jobs.merge import MergeSpec

Engine = Literal["auto", "spark", "delta-rs"]
ENGINES: tuple[Engine, ...] = ("auto", "spark", "delta-rs")
_DELTA_TABLE_CLASS = "io.delta.tables.DeltaTable"


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

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        """Atomically replace the table's rows of one batch with `rows` (all of that batch); how many."""

    def append(self, table: str, rows: DataFrame) -> None:
        """Append rows."""

    def merge(self, table: str, source: DataFrame, spec: MergeSpec) -> MergeCounts:
        """Run the MERGE `spec` from `source` into the table, in one transaction."""


def sql_string(text: str) -> str:
    """A SQL string literal both Spark SQL and DataFusion read back as `text`."""
    if any(ord(char) < 32 for char in text):
        raise ValueError(f"control characters are not allowed in {text!r}")
    return "'" + text.replace("'", "''") + "'"


def batch_predicate(batch_id: str) -> str:
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
            # An explicit schema: Spark Connect cannot infer one from zero rows.
            schema = from_arrow_schema(delta.to_pyarrow_dataset().schema)
            return self.spark.createDataFrame([], schema)
        # delta-rs never writes deletion vectors, so the snapshot's files are exactly the table's rows.
        return self.spark.read.parquet(*files)

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        from deltalake import write_deltalake

        data = _nullable_arrow(rows)
        write_deltalake(str(self.path(table)), data, mode="overwrite", predicate=batch_predicate(batch_id))
        return int(data.num_rows)

    def append(self, table: str, rows: DataFrame) -> None:
        from deltalake import write_deltalake

        write_deltalake(str(self.path(table)), _nullable_arrow(rows), mode="append")

    def merge(self, table: str, source: DataFrame, spec: MergeSpec) -> MergeCounts:
        from deltalake import DeltaTable

        merger = DeltaTable(str(self.path(table))).merge(
            _nullable_arrow(source),
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
        if not self.spark.catalog.tableExists(self.name(table)):
            self.spark.createDataFrame([], schema).write.format("delta").mode("ignore").saveAsTable(self.name(table))

    def read(self, table: str) -> DataFrame:
        return self.spark.table(self.name(table))

    def replace_batch(self, table: str, rows: DataFrame, batch_id: str) -> int:
        rows.write.format("delta").mode("overwrite").option("replaceWhere", batch_predicate(batch_id)).saveAsTable(
            self.name(table)
        )
        return int(self._last_metrics(table).get("numOutputRows", 0))

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
