"""The Delta executors: batch-scoped writes, reads and deletes, SQL literals, and which one runs."""

from __future__ import annotations

import contextlib
import uuid
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession

from filegate.jobs import TOKEN_PREFIX, batch_id
from spark_jobs.warehouse import (
    BatchPart,
    DeltaRsWarehouse,
    SparkDeltaWarehouse,
    batch_predicate,
    delta_on_spark,
    open_warehouse,
    sql_string,
)
from tests.spark_jobs.conftest import DELTA_SPARK, Lake

pytestmark = pytest.mark.spark

SCHEMA = "k string, v bigint, _batch_id string"


def rows_of(spark: SparkSession, batch: str, *rows: tuple[str, int]) -> DataFrame:
    return spark.createDataFrame([(key, value, batch) for key, value in rows], SCHEMA)


def contents(lake: Lake, table: str) -> list[tuple[str, int, str]]:
    return sorted((r["k"], r["v"], r["_batch_id"]) for r in lake.table(table).to_pylist())


def test_a_batch_is_replaced_read_and_deleted_without_touching_the_others(spark: SparkSession, lake: Lake) -> None:
    warehouse = open_warehouse(spark, "local", lake.schema)
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    warehouse.replace_batch("t", rows_of(spark, "a", ("k1", 1), ("k2", 2)), "a")
    warehouse.replace_batch("t", rows_of(spark, "b", ("k3", 3)), "b")

    replaced = warehouse.replace_batch("t", rows_of(spark, "a", ("k1", 10)), "a")
    read = sorted((r["k"], r["v"]) for r in warehouse.read_batch("t", "a").collect())
    warehouse.delete_batch("t", "a")

    assert replaced == 1
    assert read == [("k1", 10)]
    assert contents(lake, "t") == [("k3", 3, "b")]
    assert warehouse.read_batch("t", "a").count() == 0


def test_a_split_batch_sends_each_row_to_one_table(spark: SparkSession, lake: Lake) -> None:
    warehouse = open_warehouse(spark, "local", lake.schema)
    for table in ("good", "bad"):
        warehouse.ensure_table(table, rows_of(spark, "x").schema)
    warehouse.replace_batch("bad", rows_of(spark, "a", ("old", 0)), "a")
    rows = spark.createDataFrame(
        [("k1", 1, "a", False), ("k2", -2, "a", True), ("k3", 3, "a", False)], f"{SCHEMA}, _rejected boolean"
    )
    columns = ("k", "v", "_batch_id")
    parts = (BatchPart("good", columns), BatchPart("bad", columns))

    counts = warehouse.replace_batch_split(rows, "_rejected", parts, "a")

    assert counts == (2, 1)
    assert contents(lake, "good") == [("k1", 1, "a"), ("k3", 3, "a")]
    assert contents(lake, "bad") == [("k2", -2, "a")]


def test_delta_rs_reads_only_the_files_of_the_batch(spark: SparkSession, tmp_path: Path) -> None:
    warehouse = DeltaRsWarehouse(spark, tmp_path)
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    # The function's ids: two files of one day, one of the next.
    ids = [
        batch_id("order_tracking", date(2025, 3, day), f"{TOKEN_PREFIX}{token * 12}")
        for day, token in ((3, "a"), (3, "b"), (4, "a"))
    ]
    for one in ids:
        warehouse.replace_batch("t", rows_of(spark, one, ("k", 1)), one)
    actions = pa.table(DeltaTable(str(tmp_path / "t")).get_add_actions(flatten=True)).to_pylist()

    read = warehouse.read_batch("t", ids[1])

    (file_of_b,) = (a["path"] for a in actions if a["min._batch_id"] == ids[1])
    assert [Path(uri).name for uri in read.inputFiles()] == [file_of_b]
    assert [r["_batch_id"] for r in read.collect()] == [ids[1]]


def test_delta_rs_keeps_files_its_truncated_statistics_cannot_rule_out(spark: SparkSession, tmp_path: Path) -> None:
    warehouse = DeltaRsWarehouse(spark, tmp_path)
    warehouse.ensure_table("t", rows_of(spark, "x").schema)
    # delta-rs keeps 64 characters of a string's min/max: these ids differ only after that.
    ids = [f"{'x' * 64}{suffix}" for suffix in ("a", "b")]
    for one in ids:
        warehouse.replace_batch("t", rows_of(spark, one, ("k", 1)), one)

    read = warehouse.read_batch("t", ids[1])

    assert len(read.inputFiles()) == 2
    assert [r["_batch_id"] for r in read.collect()] == [ids[1]]


@pytest.mark.parametrize("text", ["order_tracking-20250303-0123456789ab", "b-2025-03-03", "a.b:c_d", "é"])
def test_sql_string_quotes_plain_text(text: str) -> None:
    assert sql_string(text) == f"'{text}'"
    assert batch_predicate(text) == f"_batch_id = '{text}'"


@pytest.mark.parametrize("text", ["a'b", "a\\b", "a\nb", "a\x00", "'"])
def test_sql_string_refuses_what_spark_sql_and_datafusion_read_differently(text: str) -> None:
    with pytest.raises(ValueError, match="read alike"):
        sql_string(text)


def test_the_engine_is_what_the_session_can_run_unless_named(spark: SparkSession, tmp_path: Path) -> None:
    chosen = open_warehouse(spark, "local", str(tmp_path))

    # This session has the Delta classes only under FILEGATE_TEST_DELTA_SPARK=1.
    assert delta_on_spark(spark) is DELTA_SPARK
    assert isinstance(chosen, SparkDeltaWarehouse if DELTA_SPARK else DeltaRsWarehouse)
    assert isinstance(open_warehouse(spark, "local", str(tmp_path), "delta-rs"), DeltaRsWarehouse)
    named = open_warehouse(spark, "main", "ingest", "spark")
    assert isinstance(named, SparkDeltaWarehouse)
    assert named.name("orders") == "main.ingest.orders"
    assert SparkDeltaWarehouse(spark, "local", "ingest").name("orders") == "ingest.orders"


def test_delta_on_spark_creates_a_missing_schema_with_its_first_table(spark: SparkSession) -> None:
    database = f"filegate_new_{uuid.uuid4().hex[:12]}"
    warehouse = SparkDeltaWarehouse(spark, "local", database)
    # Without the Delta jars (the default here) the table itself cannot be written, the schema can.
    table_write = contextlib.nullcontext() if DELTA_SPARK else pytest.raises(Exception, match=r"(?i)delta")
    try:
        with table_write:
            warehouse.ensure_table("t", rows_of(spark, "x").schema)

        assert spark.catalog.databaseExists(database)
        assert spark.catalog.tableExists(f"{database}.t") is DELTA_SPARK
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {database} CASCADE")
